//! A reader of the zip archives `numpy.savez` (stored) and `numpy.savez_compressed` (deflated)
//! write: the central directory, its zip64 size fields, and one member's bytes on request.
//!
//! The project's own, not a crate: an .npz needs ~200 lines of the format (no encryption,
//! multi-disk archives or other methods), flate2 already inflates, and a zip crate would add
//! a dependency tree to the 2-core build for no feature used here.

use flate2::read::DeflateDecoder;
use std::io::Read;

/// The most bytes one member may expand to (2 GiB, the bound of the gzip datasets too).
pub(crate) const MAX_MEMBER_BYTES: u64 = 1 << 31;

/// DEFLATE's largest expansion is 1032:1; a member claiming more is corrupt or a bomb.
const MAX_DEFLATE_RATIO: u64 = 1032;

const END_OF_DIRECTORY: u32 = 0x0605_4b50;
const DIRECTORY_ENTRY: u32 = 0x0201_4b50;
const LOCAL_HEADER: u32 = 0x0403_4b50;
const ZIP64_EXTRA: u16 = 0x0001;

/// One member as the central directory describes it.
#[derive(Clone, Debug)]
struct Member {
    name: String,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    offset: u64,
}

/// An archive in memory with its directory read.
pub(crate) struct Archive<'a> {
    bytes: &'a [u8],
    members: Vec<Member>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

const NOT_ZIP: &str = "not a zip archive (no end-of-directory record); an .npz is what numpy.savez or numpy.savez_compressed writes";

impl<'a> Archive<'a> {
    /// Reads the directory of the archive `bytes`.
    pub(crate) fn open(bytes: &'a [u8]) -> Result<Archive<'a>, String> {
        // The end record is the last 22 bytes, followed by a comment of up to 65535 bytes.
        let last = bytes.len().checked_sub(22).ok_or(NOT_ZIP)?;
        let end = (last.saturating_sub(0xffff)..=last)
            .rev()
            .find(|&at| u32_at(bytes, at) == Some(END_OF_DIRECTORY))
            .ok_or(NOT_ZIP)?;
        let count = u16_at(bytes, end + 10).ok_or(NOT_ZIP)?;
        let start = u32_at(bytes, end + 16).ok_or(NOT_ZIP)?;
        if count == 0xffff || start == 0xffff_ffff {
            return Err(
                "a zip64 archive of more than 65535 members or 4 GiB; not a dataset qsearch reads"
                    .into(),
            );
        }
        let mut members = Vec::new();
        let mut at = start as usize;
        for i in 0..count {
            let (member, next) = directory_entry(bytes, at)
                .ok_or_else(|| format!("directory entry {i} is truncated or corrupt"))?;
            members.push(member);
            at = next;
        }
        Ok(Archive { bytes, members })
    }

    /// The names of the members, in the directory's order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.name.as_str())
    }

    /// The decompressed bytes of member `name`, or `None` when the archive has none of that name.
    pub(crate) fn read(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(m) = self.members.iter().find(|m| m.name == name) else {
            return Ok(None);
        };
        let fail = |what: &str| format!("member {name}: {what}");
        if m.size > MAX_MEMBER_BYTES {
            return Err(fail(&format!(
                "claims {} bytes, more than the {MAX_MEMBER_BYTES} qsearch reads",
                m.size
            )));
        }
        let local = usize::try_from(m.offset)
            .ok()
            .filter(|&at| u32_at(self.bytes, at) == Some(LOCAL_HEADER))
            .ok_or_else(|| fail("no local header where the directory points"))?;
        let name_len = u16_at(self.bytes, local + 26).ok_or_else(|| fail("truncated header"))?;
        let extra_len = u16_at(self.bytes, local + 28).ok_or_else(|| fail("truncated header"))?;
        let start = local + 30 + usize::from(name_len) + usize::from(extra_len);
        let data = usize::try_from(m.compressed)
            .ok()
            .and_then(|n| self.bytes.get(start..start.checked_add(n)?))
            .ok_or_else(|| fail("truncated data (the archive ends early)"))?;
        let out = match m.method {
            0 => data.to_vec(),
            8 => {
                if m.size
                    > m.compressed
                        .saturating_mul(MAX_DEFLATE_RATIO)
                        .saturating_add(1024)
                {
                    return Err(fail(&format!(
                        "claims {} bytes from {} compressed, more than deflate expands",
                        m.size, m.compressed
                    )));
                }
                let mut out = Vec::new();
                DeflateDecoder::new(data)
                    .take(m.size + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| fail(&format!("corrupt deflate data: {e}")))?;
                out
            }
            other => {
                return Err(fail(&format!(
                    "compression method {other}; numpy's stored (0) and deflated (8) are read"
                )));
            }
        };
        if out.len() as u64 != m.size {
            return Err(fail(&format!(
                "holds {} bytes, the directory says {}; the archive is truncated or corrupt",
                out.len(),
                m.size
            )));
        }
        let mut crc = flate2::Crc::new();
        crc.update(&out);
        if crc.sum() != m.crc {
            return Err(fail("checksum mismatch; the archive is corrupt"));
        }
        Ok(Some(out))
    }
}

/// The directory entry at `at` and where the next one starts.
fn directory_entry(b: &[u8], at: usize) -> Option<(Member, usize)> {
    if u32_at(b, at)? != DIRECTORY_ENTRY || u16_at(b, at + 8)? & 1 != 0 {
        return None; // not an entry, or an encrypted member
    }
    let name_len = usize::from(u16_at(b, at + 28)?);
    let extra_len = usize::from(u16_at(b, at + 30)?);
    let comment_len = usize::from(u16_at(b, at + 32)?);
    let name_at = at + 46;
    let name = String::from_utf8_lossy(b.get(name_at..name_at + name_len)?).into_owned();
    let extra = b.get(name_at + name_len..name_at + name_len + extra_len)?;
    let mut member = Member {
        name,
        method: u16_at(b, at + 10)?,
        crc: u32_at(b, at + 16)?,
        compressed: u64::from(u32_at(b, at + 20)?),
        size: u64::from(u32_at(b, at + 24)?),
        offset: u64::from(u32_at(b, at + 42)?),
    };
    apply_zip64(&mut member, extra)?;
    Some((member, name_at + name_len + extra_len + comment_len))
}

/// Replaces the 32-bit fields saturated at 0xffffffff by the zip64 extra field's 64-bit values,
/// which come in the order size, compressed size, offset (each present only when saturated).
fn apply_zip64(m: &mut Member, extra: &[u8]) -> Option<()> {
    let mut at = 0;
    while at + 4 <= extra.len() {
        let id = u16_at(extra, at)?;
        let len = usize::from(u16_at(extra, at + 2)?);
        let field = extra.get(at + 4..at + 4 + len)?;
        if id == ZIP64_EXTRA {
            let mut next = 0;
            for value in [&mut m.size, &mut m.compressed, &mut m.offset] {
                if *value == 0xffff_ffff {
                    *value = u64_at(field, next)?;
                    next += 8;
                }
            }
        }
        at += 4 + len;
    }
    Some(())
}

/// An archive of `members` (name, contents), deflated or stored, as `numpy.savez_compressed`
/// and `numpy.savez` write them: test data and fuzz seeds.
pub(crate) fn write(members: &[(String, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut directory = Vec::new();
    for (name, contents) in members {
        let mut crc = flate2::Crc::new();
        crc.update(contents);
        let (method, data) = if deflate {
            let mut e =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut e, contents).expect("writing to memory");
            (8u16, e.finish().expect("writing to memory"))
        } else {
            (0u16, contents.clone())
        };
        // Version needed, flags, method, time, date (1980-01-01), CRC, sizes, name and extra lengths.
        let mut common = Vec::new();
        common.extend(20u16.to_le_bytes());
        common.extend(0u16.to_le_bytes());
        common.extend(method.to_le_bytes());
        common.extend(0u16.to_le_bytes());
        common.extend(0x21u16.to_le_bytes());
        common.extend(crc.sum().to_le_bytes());
        common.extend((data.len() as u32).to_le_bytes());
        common.extend((contents.len() as u32).to_le_bytes());
        common.extend((name.len() as u16).to_le_bytes());
        common.extend(0u16.to_le_bytes());
        directory.extend(DIRECTORY_ENTRY.to_le_bytes());
        directory.extend(20u16.to_le_bytes());
        directory.extend(&common);
        // Comment length, disk, internal and external attributes, local header offset.
        directory.extend([0u8; 10]);
        directory.extend((out.len() as u32).to_le_bytes());
        directory.extend(name.as_bytes());
        out.extend(LOCAL_HEADER.to_le_bytes());
        out.extend(&common);
        out.extend(name.as_bytes());
        out.extend(&data);
    }
    let start = out.len() as u32;
    let count = members.len() as u16;
    out.extend(&directory);
    out.extend(END_OF_DIRECTORY.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend(count.to_le_bytes());
    out.extend(count.to_le_bytes());
    out.extend((directory.len() as u32).to_le_bytes());
    out.extend(start.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}
