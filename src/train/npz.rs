//! Datasets in an .npz (`numpy.savez` or `numpy.savez_compressed`): `x_train`, `y_train`,
//! `x_test`, `y_test` for training, or `x` and an optional `y` of calibration images.
//!
//! Images are uint8, or float32/float64 in [0, 1] or [0, 255] (an array whose largest value is
//! at most 1 is taken as [0, 1] and multiplied by 255); floats are rounded to the uint8 pixels
//! the training pipeline scales to [0, 1] and the integer deployment takes as input. They are
//! NHW (one channel), NHWC or NCHW: the channel axis is the smaller of axes 1 and 3, axis 3
//! (numpy's and Keras's NHWC) on a tie. Labels are any integer dtype, shape (N,) or (N, 1),
//! 0 to 255; the classes are the largest label + 1.

use super::data::{DataError, Dataset, Split};
use super::npy::{Array, Kind};
use super::zip::Archive;
use std::path::Path;

/// The largest label: labels are kept as bytes.
const MAX_LABEL: i128 = 255;

fn err(path: &Path, message: impl Into<String>) -> DataError {
    DataError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The arrays of an .npz in memory; errors name `path` and the array.
pub(crate) struct Npz<'a> {
    archive: Archive<'a>,
    path: &'a Path,
}

impl<'a> Npz<'a> {
    pub(crate) fn open(bytes: &'a [u8], path: &'a Path) -> Result<Npz<'a>, DataError> {
        let archive = Archive::open(bytes).map_err(|e| err(path, e))?;
        Ok(Npz { archive, path })
    }

    fn array_err(&self, name: &str, message: impl std::fmt::Display) -> DataError {
        err(self.path, format!("array {name}: {message}"))
    }

    /// Array `name`, or `None` when the archive has no `name.npy`.
    fn get(&self, name: &str) -> Result<Option<Array>, DataError> {
        let Some(bytes) = self
            .archive
            .read(&format!("{name}.npy"))
            .map_err(|e| self.array_err(name, e))?
        else {
            return Ok(None);
        };
        Array::parse(bytes)
            .map(Some)
            .map_err(|e| self.array_err(name, e))
    }

    /// Array `name`, which must be there.
    fn require(&self, name: &str) -> Result<Array, DataError> {
        self.get(name)?.ok_or_else(|| {
            let held: Vec<&str> = self.archive.names().collect();
            err(
                self.path,
                format!(
                    "has no array {name} (it holds {}); a dataset .npz holds x_train, y_train, x_test, y_test (calibration images: x and optionally y), as numpy.savez(path, x_train=..., ...) writes",
                    if held.is_empty() { "nothing".into() } else { held.join(", ") }
                ),
            )
        })
    }

    /// The images of array `name` as a split without labels yet.
    fn images(&self, name: &str) -> Result<Split, DataError> {
        let a = self.require(name)?;
        let fail = |m: String| self.array_err(name, m);
        let (count, channels, height, width, channels_last) = match a.shape[..] {
            [n, h, w] => (n, 1, h, w, true),
            [n, a1, a2, a3] if a3 <= a1 => (n, a3, a1, a2, true),
            [n, c, h, w] => (n, c, h, w, false),
            _ => {
                return Err(fail(format!(
                    "shape {:?}; images are NHW, NHWC or NCHW",
                    a.shape
                )));
            }
        };
        if a.shape.contains(&0) {
            return Err(fail(format!(
                "shape {:?}; images need at least one image of at least 1x1 pixels",
                a.shape
            )));
        }
        let pixels = match (a.dtype.kind, a.dtype.size) {
            (Kind::Uint, 1) => a.bytes().to_vec(),
            (Kind::Float, _) => float_pixels(&a).map_err(fail)?,
            _ => {
                return Err(fail(format!(
                    "dtype '{}'; images are uint8, or float32/float64 in [0, 1] or [0, 255]",
                    a.descr
                )));
            }
        };
        let images = if channels_last && channels > 1 {
            to_chw(&pixels, count, height * width, channels)
        } else {
            pixels
        };
        Ok(Split {
            images,
            labels: Vec::new(),
            channels,
            height,
            width,
        })
    }

    /// The labels of array `name`, one per image of `images` (named `images_name`).
    fn labels(
        &self,
        name: &str,
        a: &Array,
        images: &Split,
        images_name: &str,
    ) -> Result<Vec<u8>, DataError> {
        let fail = |m: String| self.array_err(name, m);
        let count = images.images.len() / images.image_len();
        if !matches!(a.shape[..], [n] | [n, 1] if n == count) {
            return Err(fail(format!(
                "shape {:?}; labels are (N,) or (N, 1) with N = {count}, the images in {images_name}",
                a.shape
            )));
        }
        if a.dtype.kind == Kind::Float {
            return Err(fail(format!(
                "dtype '{}'; labels are class indices of an integer dtype",
                a.descr
            )));
        }
        a.integers()
            .map(|l| {
                u8::try_from(l)
                    .ok()
                    .filter(|_| l <= MAX_LABEL)
                    .ok_or_else(|| fail(format!("holds label {l}; labels are 0 to {MAX_LABEL}")))
            })
            .collect()
    }

    /// Images `x` with labels `y`.
    fn split(&self, x: &str, y: &str) -> Result<Split, DataError> {
        let mut split = self.images(x)?;
        split.labels = self.labels(y, &self.require(y)?, &split, x)?;
        Ok(split)
    }

    fn classes(&self, splits: &[&Split], arrays: &str) -> Result<usize, DataError> {
        let classes = splits
            .iter()
            .flat_map(|s| s.labels.iter())
            .max()
            .map_or(0, |&l| usize::from(l) + 1);
        if classes < 2 {
            return Err(err(
                self.path,
                format!(
                    "arrays {arrays}: the largest label is {}; a classifier needs at least 2 classes (labels 0 to N-1)",
                    classes.saturating_sub(1)
                ),
            ));
        }
        Ok(classes)
    }

    /// A training dataset: `x_train`, `y_train`, `x_test`, `y_test`.
    pub(crate) fn dataset(&self) -> Result<Dataset, DataError> {
        let train = self.split("x_train", "y_train")?;
        let test = self.split("x_test", "y_test")?;
        let shape = |s: &Split| (s.channels, s.height, s.width);
        if shape(&train) != shape(&test) {
            let (c, h, w) = shape(&test);
            return Err(self.array_err(
                "x_test",
                format!(
                    "images of {c}x{h}x{w} (CxHxW) but x_train's are {}x{}x{}; both splits need one image shape",
                    train.channels, train.height, train.width
                ),
            ));
        }
        Ok(Dataset {
            name: self.path.display().to_string(),
            classes: self.classes(&[&train, &test], "y_train, y_test")?,
            train,
            test,
        })
    }

    /// Calibration images `x`, with labels `y` when the archive holds them (and `classes`).
    pub(crate) fn calibration(&self) -> Result<(Split, Option<usize>), DataError> {
        let mut x = self.images("x")?;
        let Some(y) = self.get("y")? else {
            x.labels = vec![0; x.images.len() / x.image_len()];
            return Ok((x, None));
        };
        x.labels = self.labels("y", &y, &x, "x")?;
        let classes = self.classes(&[&x], "y")?;
        Ok((x, Some(classes)))
    }
}

/// Float pixels in [0, 1] or [0, 255] rounded to bytes.
fn float_pixels(a: &Array) -> Result<Vec<u8>, String> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in a.floats() {
        if !v.is_finite() {
            return Err(format!(
                "holds {v}; images are finite values in [0, 1] or [0, 255]"
            ));
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo < 0.0 || hi > 255.0 {
        return Err(format!(
            "'{}' values span [{lo}, {hi}]; float images are in [0, 1] or [0, 255] (not normalized by a mean and deviation: the deployed network takes uint8 pixels)",
            a.descr
        ));
    }
    let scale = if hi <= 1.0 { 255.0 } else { 1.0 };
    Ok(a.floats().map(|v| (v * scale).round() as u8).collect())
}

/// `count` images of `pixels` pixels with `channels` innermost, reordered channel-major.
fn to_chw(hwc: &[u8], count: usize, pixels: usize, channels: usize) -> Vec<u8> {
    let image = pixels * channels;
    hwc.chunks_exact(image)
        .take(count)
        .flat_map(|img| {
            (0..channels).flat_map(move |c| (0..pixels).map(move |p| img[p * channels + c]))
        })
        .collect()
}

/// Reads the .npz at `path` whole (its real size bounds everything read from it).
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => err(path, "not found"),
        _ => err(path, format!("cannot read: {e}")),
    })
}

/// The training dataset in the .npz at `path`.
pub fn load_dataset(path: &Path) -> Result<Dataset, DataError> {
    let bytes = read_file(path)?;
    Npz::open(&bytes, path)?.dataset()
}

/// The calibration images (`x`, optional `y`) in the .npz at `path`, and their classes when
/// labelled.
pub fn load_calibration(path: &Path) -> Result<(Split, Option<usize>), DataError> {
    let bytes = read_file(path)?;
    Npz::open(&bytes, path)?.calibration()
}

/// One array of an .npz to write: name, numpy dtype (`<f4`, `|u1`...), shape, raw elements.
pub struct NpzArray<'a> {
    pub name: &'a str,
    pub descr: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

/// An .npz of `arrays` as `numpy.savez` (stored) or `numpy.savez_compressed` (`deflate`)
/// writes it; for test data and fuzz seeds.
pub fn encode(arrays: &[NpzArray], deflate: bool) -> Vec<u8> {
    let members: Vec<(String, Vec<u8>)> = arrays
        .iter()
        .map(|a| {
            (
                format!("{}.npy", a.name),
                super::npy::encode(a.descr, a.shape, a.data),
            )
        })
        .collect();
    super::zip::write(&members, deflate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr<'a>(name: &'a str, descr: &'a str, shape: &'a [usize], data: &'a [u8]) -> NpzArray<'a> {
        NpzArray {
            name,
            descr,
            shape,
            data,
        }
    }

    fn dataset(arrays: &[NpzArray], deflate: bool) -> Result<Dataset, String> {
        let bytes = encode(arrays, deflate);
        Npz::open(&bytes, Path::new("d.npz"))
            .and_then(|n| n.dataset())
            .map_err(|e| e.to_string())
    }

    /// Four 4x4 RGB images, NHWC: pixel p of image i, channel c holds 100 (i mod 2) + 10 p + c.
    fn nhwc() -> Vec<u8> {
        (0..4)
            .flat_map(|i| {
                (0..16).flat_map(move |p| (0..3).map(move |c| (100 * (i % 2) + 10 * p + c) as u8))
            })
            .collect()
    }

    fn expect_err(arrays: &[NpzArray], wanted: &str) {
        let e = dataset(arrays, false).unwrap_err();
        assert!(e.starts_with("d.npz: ") && e.contains(wanted), "{e}");
    }

    #[test]
    fn uint8_nhwc_with_big_endian_labels() {
        let x = nhwc();
        let labels_be: Vec<u8> = [0i32, 1, 2, 1]
            .iter()
            .flat_map(|l| l.to_be_bytes())
            .collect();
        let d = dataset(
            &[
                arr("x_train", "|u1", &[4, 4, 4, 3], &x),
                arr("y_train", ">i4", &[4], &labels_be),
                arr("x_test", "|u1", &[2, 4, 4, 3], &x[..96]),
                arr("y_test", "<u2", &[2, 1], &[3, 0, 0, 0]),
            ],
            false,
        )
        .unwrap();
        assert_eq!((d.train.channels, d.train.height, d.train.width), (3, 4, 4));
        assert_eq!(d.train.labels, vec![0, 1, 2, 1]);
        assert_eq!(d.test.labels, vec![3, 0]);
        assert_eq!(d.classes, 4);
        assert_eq!(d.name, "d.npz");
        // Channel-major: image 1's first channel is 100, 110, 120, 130.
        assert_eq!(&d.train.image(1)[..4], &[100, 110, 120, 130]);
        assert_eq!(d.train.image_hwc(1), x[48..96].to_vec());
    }

    #[test]
    fn float_nchw_deflated_and_float64_nhw() {
        // NCHW float32 in [0, 1]: scaled by 255 and rounded.
        let values = [0.0f32, 0.5, 1.0, 0.2];
        let x: Vec<u8> = values
            .iter()
            .cycle()
            .take(2 * 3 * 4 * 4)
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let d = dataset(
            &[
                arr("x_train", "<f4", &[2, 3, 4, 4], &x),
                arr("y_train", "|i1", &[2], &[0, 1]),
                arr("x_test", "<f4", &[2, 3, 4, 4], &x),
                arr(
                    "y_test",
                    "<i8",
                    &[2],
                    &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
            ],
            true,
        )
        .unwrap();
        assert_eq!((d.train.channels, d.train.height, d.train.width), (3, 4, 4));
        assert_eq!(&d.train.image(0)[..4], &[0, 128, 255, 51]);
        // NHW float64 in [0, 255], big-endian: taken as is.
        let x: Vec<u8> = [3.0f64, 254.6, 17.0, 0.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let d = dataset(
            &[
                arr("x_train", ">f8", &[1, 2, 2], &x),
                arr("y_train", "|u1", &[1], &[1]),
                arr("x_test", ">f8", &[1, 2, 2], &x),
                arr("y_test", "|u1", &[1], &[0]),
            ],
            true,
        )
        .unwrap();
        assert_eq!(d.train.channels, 1);
        assert_eq!(d.train.images, vec![3, 255, 17, 0]);
    }

    #[test]
    fn bad_files_name_the_file_and_the_array() {
        let x = nhwc();
        let good = |name| arr(name, "|u1", &[4, 4, 4, 3], &x);
        let labels = |name| arr(name, "|u1", &[4], &[0, 1, 0, 1]);
        expect_err(
            &[good("x_train"), labels("y_train"), good("x_test")],
            "has no array y_test (it holds x_train.npy, y_train.npy, x_test.npy)",
        );
        expect_err(
            &[
                arr("x_train", "<i4", &[1, 2, 2, 3], &x[..48]),
                labels("y_train"),
                good("x_test"),
                labels("y_test"),
            ],
            "array x_train: dtype '<i4'; images are uint8, or float32/float64",
        );
        expect_err(
            &[
                good("x_train"),
                arr("y_train", "|i1", &[4], &[0, 1, 255, 1]),
                good("x_test"),
                labels("y_test"),
            ],
            "array y_train: holds label -1; labels are 0 to 255",
        );
        expect_err(
            &[
                good("x_train"),
                arr("y_train", "<u2", &[4], &[0, 1, 0, 1, 0, 1, 2, 0]),
                good("x_test"),
                labels("y_test"),
            ],
            "array y_train: holds label 256",
        );
        expect_err(
            &[
                good("x_train"),
                arr("y_train", "|u1", &[3], &[0, 1, 0]),
                good("x_test"),
                labels("y_test"),
            ],
            "array y_train: shape [3]; labels are (N,) or (N, 1) with N = 4, the images in x_train",
        );
        expect_err(
            &[
                arr("x_train", "|u1", &[16, 12], &x),
                labels("y_train"),
                good("x_test"),
                labels("y_test"),
            ],
            "array x_train: shape [16, 12]; images are NHW, NHWC or NCHW",
        );
        expect_err(
            &[
                good("x_train"),
                labels("y_train"),
                arr("x_test", "|u1", &[4, 3, 8, 2], &x),
                labels("y_test"),
            ],
            "array x_test: images of 2x3x8 (CxHxW) but x_train's are 3x4x4",
        );
        expect_err(
            &[
                good("x_train"),
                arr("y_train", "|u1", &[4], &[0; 4]),
                good("x_test"),
                arr("y_test", "|u1", &[4], &[0; 4]),
            ],
            "arrays y_train, y_test: the largest label is 0; a classifier needs at least 2 classes",
        );
        let normalized: Vec<u8> = [-0.5f32, 0.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        expect_err(
            &[
                arr("x_train", "<f4", &[2, 1, 1], &normalized),
                arr("y_train", "|u1", &[2], &[0, 1]),
                good("x_test"),
                labels("y_test"),
            ],
            "array x_train: '<f4' values span [-0.5, 0.5]; float images are in [0, 1] or [0, 255]",
        );
        expect_err(
            &[
                arr("x_train", "|u1", &[4, 4, 4, 3], &x[..40]),
                labels("y_train"),
                good("x_test"),
                labels("y_test"),
            ],
            "array x_train: holds 40 bytes of data but shape [4, 4, 4, 3] of '|u1' needs 192",
        );
    }

    #[test]
    fn corrupt_archives_and_arrays() {
        let x = nhwc();
        let arrays = [
            arr("x_train", "|u1", &[4, 4, 4, 3], &x),
            arr("y_train", "|u1", &[4], &[0, 1, 0, 1]),
            arr("x_test", "|u1", &[4, 4, 4, 3], &x),
            arr("y_test", "|u1", &[4], &[0, 1, 0, 1]),
        ];
        let open = |bytes: &[u8]| {
            Npz::open(bytes, Path::new("d.npz"))
                .and_then(|n| n.dataset())
                .unwrap_err()
                .to_string()
        };
        for deflate in [false, true] {
            let bytes = encode(&arrays, deflate);
            // Cut before the end: the directory is gone.
            let e = open(&bytes[..bytes.len() - 30]);
            assert!(e.contains("d.npz: not a zip archive"), "{e}");
            // A flipped data byte: the checksum (stored) or the inflater (deflated) notices.
            let mut flipped = bytes.clone();
            flipped[45] ^= 0x55;
            let e = open(&flipped);
            assert!(
                e.starts_with("d.npz: array x_train: member x_train.npy: "),
                "{e}"
            );
        }
        // Cut inside the data, end record kept: the directory is no longer where it says.
        let bytes = encode(&arrays, false);
        let mut truncated = bytes[..200].to_vec();
        truncated.extend(&bytes[bytes.len() - 22..]);
        let e = open(&truncated);
        assert!(
            e.contains("d.npz: directory entry 0 is truncated or corrupt"),
            "{e}"
        );
        // Fortran order.
        let mut member = super::super::npy::encode("|u1", &[4, 4, 4, 3], &x);
        let at = member.windows(5).position(|w| w == b"False").unwrap();
        member.splice(at..at + 5, *b"True ");
        let bytes = super::super::zip::write(&[("x_train.npy".into(), member)], false);
        let e = open(&bytes);
        assert!(e.contains("array x_train: stored in Fortran order"), "{e}");
    }

    #[test]
    fn calibration_images_with_and_without_labels() {
        let x = nhwc();
        let open = |arrays: &[NpzArray]| {
            let bytes = encode(arrays, false);
            Npz::open(&bytes, Path::new("c.npz")).and_then(|n| n.calibration())
        };
        let (split, classes) = open(&[arr("x", "|u1", &[4, 4, 4, 3], &x)]).unwrap();
        assert_eq!((split.len(), classes), (4, None));
        let (split, classes) = open(&[
            arr("x", "|u1", &[4, 4, 4, 3], &x),
            arr("y", "|u1", &[4], &[0, 1, 2, 0]),
        ])
        .unwrap();
        assert_eq!((split.labels, classes), (vec![0, 1, 2, 0], Some(3)));
        let e = open(&[arr("x_train", "|u1", &[4, 4, 4, 3], &x)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.npz: has no array x (it holds x_train.npy)"),
            "{e}"
        );
    }

    /// Files numpy itself wrote (`scripts/npz_fixtures.py`): stored and deflated members with
    /// numpy's zip64 local headers.
    #[test]
    fn files_numpy_wrote() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/npz");
        let d = load_dataset(&dir.join("uint8-nhwc.npz")).unwrap();
        assert_eq!((d.train.len(), d.test.len(), d.classes), (6, 2, 5));
        assert_eq!((d.train.channels, d.train.height, d.train.width), (3, 4, 4));
        assert_eq!(
            &d.train.image(1)[..8],
            &[127, 128, 76, 154, 95, 186, 220, 1]
        );
        let d = load_dataset(&dir.join("float-nchw.npz")).unwrap();
        assert_eq!((d.train.len(), d.test.len(), d.classes), (6, 3, 2));
        assert_eq!((d.train.channels, d.train.height, d.train.width), (1, 5, 5));
        assert_eq!(&d.train.image(0)[..6], &[108, 124, 183, 227, 19, 238]);
        assert_eq!(d.train.labels, vec![1, 0, 1, 1, 0, 1]);
        let (x, classes) = load_calibration(&dir.join("calibration.npz")).unwrap();
        assert_eq!(
            (x.len(), x.channels, x.height, x.width, classes),
            (5, 1, 28, 28, None)
        );
        let e = load_dataset(&dir.join("calibration.npz"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("calibration.npz: has no array x_train (it holds x.npy)"),
            "{e}"
        );
    }
}
