//! Datasets: MNIST-format IDX files (Fashion-MNIST from Debian's `dataset-fashion-mnist`, or any
//! directory holding the four files, gzipped or not), the CIFAR-10 binary format and `.npz`
//! files as numpy writes them ([`super::npz`]). Images are kept as bytes in CHW order; batches
//! are scaled to [0, 1].

use flate2::read::GzDecoder;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` installs the data.
pub(crate) const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error(
        "{0}: not found; install Fashion-MNIST with `sudo apt-get install dataset-fashion-mnist` (scripts/setup.sh does), or pass --data DIR with MNIST-format files"
    )]
    Missing(String),
    #[error(
        "unknown dataset '{0}'; use fashion-mnist, an MNIST-format directory, a CIFAR-10 binary directory, or an .npz file (x_train, y_train, x_test, y_test)"
    )]
    Unknown(String),
    #[error("dataset '{spec}': '@{size}' is not an image size from 1 to {MAX_RESIZE}")]
    Resize { spec: String, size: String },
}

/// Images (`count x channels x height x width` bytes) and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub(crate) fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Image `i` in HWC order (channels innermost), the layout of the integer deployment.
    pub fn image_hwc(&self, i: usize) -> Vec<u8> {
        let chw = self.image(i);
        let hw = self.height * self.width;
        (0..hw)
            .flat_map(|p| (0..self.channels).map(move |c| chw[c * hw + p]))
            .collect()
    }

    /// The images at `indices`, scaled to [0, 1], flattened, with their labels.
    pub fn batch(&self, indices: &[usize]) -> (Vec<f32>, Vec<i64>) {
        let mut x = Vec::with_capacity(indices.len() * self.image_len());
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            x.extend(self.image(i).iter().map(|&p| f32::from(p) / 255.0));
            y.push(i64::from(self.labels[i]));
        }
        (x, y)
    }

    /// The first `n` examples (or all).
    pub fn take(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            images: self.images[..n * self.image_len()].to_vec(),
            labels: self.labels[..n].to_vec(),
            ..self.clone()
        }
    }

    /// Splits off the last `n` examples: `(rest, last n)`.
    pub fn split_off(&self, n: usize) -> (Split, Split) {
        let keep = self.len().saturating_sub(n);
        let cut = keep * self.image_len();
        let head = Split {
            images: self.images[..cut].to_vec(),
            labels: self.labels[..keep].to_vec(),
            ..self.clone()
        };
        let tail = Split {
            images: self.images[cut..].to_vec(),
            labels: self.labels[keep..].to_vec(),
            ..self.clone()
        };
        (head, tail)
    }

    /// The images resampled to `size x size` by area averaging: each output pixel is the mean
    /// of the input area it covers (edge pixels by their covered fraction), as a sensor binned
    /// down would see the scene; rounded to the nearest byte.
    pub fn resized(&self, size: usize) -> Split {
        let rows = area_weights(self.height, size);
        let columns = area_weights(self.width, size);
        let mut images = Vec::with_capacity(self.len() * self.channels * size * size);
        for plane in self.images.chunks_exact(self.height * self.width) {
            for row in &rows {
                for column in &columns {
                    let mut sum = 0.0;
                    for &(y, wy) in row {
                        for &(x, wx) in column {
                            sum += f64::from(plane[y * self.width + x]) * wy * wx;
                        }
                    }
                    images.push(sum.round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        Split {
            images,
            labels: self.labels.clone(),
            channels: self.channels,
            height: size,
            width: size,
        }
    }

    /// A seeded permutation of the examples, the order of one epoch.
    pub fn epoch_order(&self, seed: u64, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        order.shuffle(&mut rng);
        order
    }
}

/// For each of `to` output pixels along an axis of `from` input pixels: the input pixels it
/// covers and the fraction of its area each covers (summing to 1).
fn area_weights(from: usize, to: usize) -> Vec<Vec<(usize, f64)>> {
    let scale = from as f64 / to as f64;
    (0..to)
        .map(|o| {
            let (lo, hi) = (o as f64 * scale, (o + 1) as f64 * scale);
            (lo.floor() as usize..(hi.ceil() as usize).min(from))
                .map(|i| {
                    let covered = hi.min(i as f64 + 1.0) - lo.max(i as f64);
                    (i, covered / scale)
                })
                .collect()
        })
        .collect()
}

/// A dataset's training and test splits.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub train: Split,
    pub test: Split,
    pub classes: usize,
}

fn file_err(path: &Path, message: impl Into<String>) -> DataError {
    DataError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The most bytes a gzip-compressed dataset file may expand to (2 GiB; Fashion-MNIST's largest
/// file holds 47 MB).
const MAX_GUNZIPPED_BYTES: u64 = 1 << 31;

/// Reads a file, gunzipping it when it is gzip-compressed.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::Missing(path.display().to_string()),
        _ => file_err(path, format!("cannot read: {e}")),
    })?;
    gunzip_if_compressed(raw, path)
}

/// `raw` itself, or its decompressed content when it starts with the gzip magic number; `path`
/// names the file in errors.
pub(crate) fn gunzip_if_compressed(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    GzDecoder::new(&raw[..])
        .take(MAX_GUNZIPPED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            file_err(
                path,
                format!("corrupt gzip data: {e}; reinstall the dataset"),
            )
        })?;
    if out.len() as u64 > MAX_GUNZIPPED_BYTES {
        return Err(file_err(
            path,
            format!(
                "expands to more than {MAX_GUNZIPPED_BYTES} bytes; not a dataset qsearch reads"
            ),
        ));
    }
    Ok(out)
}

/// Parses an IDX file: magic `0x0000 08 <rank>`, big-endian dimensions, unsigned bytes.
pub(crate) fn parse_idx(
    bytes: &[u8],
    path: &Path,
    rank: usize,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(file_err(
            path,
            "not an IDX file of unsigned bytes (bad magic number)",
        ));
    }
    if bytes[3] as usize != rank {
        return Err(file_err(
            path,
            format!("has {} dimensions, expected {rank}", bytes[3]),
        ));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(file_err(path, "truncated header"));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            u32::from_be_bytes([
                bytes[4 + 4 * i],
                bytes[5 + 4 * i],
                bytes[6 + 4 * i],
                bytes[7 + 4 * i],
            ]) as usize
        })
        .collect();
    // The dimensions are checked against the data that is there before anything is allocated.
    let expected = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let data = &bytes[header..];
    if expected != Some(data.len()) {
        let expected =
            expected.map_or_else(|| "more than memory holds".to_string(), |n| n.to_string());
        return Err(file_err(
            path,
            format!(
                "holds {} bytes of data but its dimensions {dims:?} need {expected}; the file is truncated or corrupt",
                data.len()
            ),
        ));
    }
    Ok((dims, data.to_vec()))
}

/// Finds `stem` in `dir`, gzipped or not.
fn locate(dir: &Path, stem: &str) -> PathBuf {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.exists() { gz } else { dir.join(stem) }
}

fn idx_split(dir: &Path, prefix: &str) -> Result<Split, DataError> {
    let images_path = locate(dir, &format!("{prefix}-images-idx3-ubyte"));
    let labels_path = locate(dir, &format!("{prefix}-labels-idx1-ubyte"));
    let images = read_maybe_gz(&images_path)?;
    let labels = read_maybe_gz(&labels_path)?;
    idx_split_from_bytes(&images, &images_path, &labels, &labels_path)
}

/// One split from the (decompressed) contents of its IDX images and labels files; the paths
/// name them in errors.
pub(crate) fn idx_split_from_bytes(
    images: &[u8],
    images_path: &Path,
    labels: &[u8],
    labels_path: &Path,
) -> Result<Split, DataError> {
    let (dims, images) = parse_idx(images, images_path, 3)?;
    if dims.contains(&0) {
        return Err(file_err(
            images_path,
            format!(
                "has dimensions {dims:?}; images need at least one image of at least 1x1 pixels"
            ),
        ));
    }
    let (ldims, labels) = parse_idx(labels, labels_path, 1)?;
    if dims[0] != ldims[0] {
        return Err(file_err(
            labels_path,
            format!(
                "has {} labels for {} images in {}",
                ldims[0],
                dims[0],
                images_path.display()
            ),
        ));
    }
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        return Err(file_err(
            labels_path,
            format!("holds label {bad}; MNIST-format labels are 0-9"),
        ));
    }
    Ok(Split {
        images,
        labels,
        channels: 1,
        height: dims[1],
        width: dims[2],
    })
}

/// An MNIST-format directory (`train-images-idx3-ubyte[.gz]`, ... `t10k-labels-idx1-ubyte[.gz]`).
pub(crate) fn load_idx_dir(dir: &Path, name: &str) -> Result<Dataset, DataError> {
    Ok(Dataset {
        name: name.to_string(),
        train: idx_split(dir, "train")?,
        test: idx_split(dir, "t10k")?,
        classes: 10,
    })
}

/// The CIFAR-10 binary format: `data_batch_1.bin` ... `data_batch_5.bin` and `test_batch.bin`,
/// records of one label byte and 3072 image bytes (CHW, 32x32).
pub(crate) fn load_cifar10(dir: &Path) -> Result<Dataset, DataError> {
    let read = |files: &[String]| -> Result<Split, DataError> {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for f in files {
            let path = dir.join(f);
            let bytes = read_maybe_gz(&path)?;
            add_cifar_records(&bytes, &path, &mut images, &mut labels)?;
        }
        Ok(Split {
            images,
            labels,
            channels: 3,
            height: 32,
            width: 32,
        })
    };
    let train: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin")).collect();
    Ok(Dataset {
        name: "cifar10".into(),
        train: read(&train)?,
        test: read(&["test_batch.bin".to_string()])?,
        classes: 10,
    })
}

/// Appends the records of one (decompressed) CIFAR-10 batch file to `images` and `labels`;
/// `path` names the file in errors.
pub(crate) fn add_cifar_records(
    bytes: &[u8],
    path: &Path,
    images: &mut Vec<u8>,
    labels: &mut Vec<u8>,
) -> Result<(), DataError> {
    const RECORD: usize = 1 + 3 * 32 * 32;
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(file_err(
            path,
            format!(
                "has {} bytes, not a multiple of the {RECORD}-byte CIFAR-10 record",
                bytes.len()
            ),
        ));
    }
    for record in bytes.chunks_exact(RECORD) {
        if record[0] > 9 {
            return Err(file_err(
                path,
                format!("holds label {}; CIFAR-10 labels are 0-9", record[0]),
            ));
        }
        labels.push(record[0]);
        images.extend_from_slice(&record[1..]);
    }
    Ok(())
}

/// `fashion-mnist` (Debian's package), a directory in MNIST or CIFAR-10 binary format, or an
/// `.npz` file; any of them followed by `@N` (`fashion-mnist@20`) with its images resized to
/// `N x N` ([`Split::resized`]), for networks at another input resolution.
pub fn load(spec: &str) -> Result<Dataset, DataError> {
    if let Some((base, size)) = spec.rsplit_once('@')
        && !Path::new(spec).exists()
    {
        let size: usize = size
            .parse()
            .ok()
            .filter(|&n| (1..=MAX_RESIZE).contains(&n))
            .ok_or_else(|| DataError::Resize {
                spec: spec.to_string(),
                size: size.to_string(),
            })?;
        let d = load(base)?;
        return Ok(Dataset {
            name: format!("{}@{size}", d.name),
            train: d.train.resized(size),
            test: d.test.resized(size),
            classes: d.classes,
        });
    }
    if spec == "fashion-mnist" {
        return load_idx_dir(Path::new(FASHION_MNIST_DIR), "fashion-mnist");
    }
    let dir = Path::new(spec);
    if dir
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"))
    {
        return super::npz::load_dataset(dir);
    }
    if dir.join("test_batch.bin").exists() || dir.join("data_batch_1.bin").exists() {
        return load_cifar10(dir);
    }
    if dir.is_dir() {
        let name = dir
            .file_name()
            .map_or("idx".into(), |n| n.to_string_lossy().into_owned());
        return load_idx_dir(dir, &name);
    }
    Err(DataError::Unknown(spec.to_string()))
}

/// The largest image side `@N` resizes to.
const MAX_RESIZE: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizing_averages_the_covered_area() {
        let split = Split {
            images: vec![0, 100, 200, 60, 60, 60, 255, 255, 255],
            labels: vec![3],
            channels: 1,
            height: 3,
            width: 3,
        };
        let half = split.resized(2);
        assert_eq!(
            (half.height, half.width, half.labels.clone()),
            (2, 2, vec![3])
        );
        // Each output pixel covers 1.5 x 1.5 input pixels: e.g. the first takes 0 in full,
        // half of 100 and 60, a quarter of 60, over an area of 2.25.
        let first = (0.0 + 0.5 * 100.0 + 0.5 * 60.0 + 0.25 * 60.0) / 2.25_f64;
        assert_eq!(half.images[0], first.round() as u8);
        assert_eq!(split.resized(3), split);
        assert_eq!(split.resized(1).images, vec![138]);
        let err = load("fashion-mnist@0").unwrap_err().to_string();
        assert!(
            err.contains("'@0' is not an image size from 1 to 1024"),
            "{err}"
        );
    }

    fn idx(rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, rank];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn idx_parsing_and_corruption() {
        let p = Path::new("x-idx3-ubyte");
        let ok = idx(3, &[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(parse_idx(&ok, p, 3).unwrap().0, vec![2, 2, 2]);
        let err = parse_idx(&ok[..10], p, 3).unwrap_err().to_string();
        assert!(err.contains("truncated header"), "{err}");
        let err = parse_idx(&ok[..19], p, 3).unwrap_err().to_string();
        assert!(
            err.contains("holds 3 bytes of data but its dimensions [2, 2, 2] need 8"),
            "{err}"
        );
        let err = parse_idx(&[1, 2, 3, 4, 5], p, 3).unwrap_err().to_string();
        assert!(err.contains("bad magic number"), "{err}");
    }

    #[test]
    fn directories_with_bad_files_name_them() {
        let dir = std::env::temp_dir().join(format!("qsearch-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = load_idx_dir(&dir, "x").unwrap_err().to_string();
        assert!(
            err.contains("train-images-idx3-ubyte: not found; install Fashion-MNIST"),
            "{err}"
        );
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx(3, &[2, 2, 2], &[0; 8]),
        )
        .unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte.gz"),
            b"\x1f\x8bnot really gzip",
        )
        .unwrap();
        let err = load_idx_dir(&dir, "x").unwrap_err().to_string();
        assert!(
            err.contains("train-labels-idx1-ubyte.gz: corrupt gzip data"),
            "{err}"
        );
        std::fs::write(dir.join("test_batch.bin"), [0u8; 100]).unwrap();
        let err = load(dir.to_str().unwrap()).unwrap_err().to_string();
        assert!(
            err.contains("not a multiple of the 3073-byte CIFAR-10 record")
                || err.contains("data_batch_1.bin: not found"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn epoch_orders_are_seeded() {
        let s = Split {
            images: vec![0; 10],
            labels: vec![0; 10],
            channels: 1,
            height: 1,
            width: 1,
        };
        assert_eq!(s.epoch_order(1, 0), s.epoch_order(1, 0));
        assert_ne!(s.epoch_order(1, 0), s.epoch_order(1, 1));
    }
}
