//! Tensors of safetensors files as matrices for the engine: opening a file,
//! validating its header against it (`safetensors::parse_header`), resolving
//! the tensors a caller asks for, and reading their bytes.
//!
//! Tensors of several files (checkpoints) may be mixed in one batch, so
//! that many small checkpoints share one parallel run; each file is opened
//! once per batch, and a header already parsed (for example by a preceding
//! `header` call on the same file) is not parsed again.

use std::fs::File;
use std::sync::{Arc, Mutex};

use faer::Par;

use crate::error::Error;
use crate::matrix::{MatrixView, PackedMatrix};
use crate::safetensors::{self, Dtype, Header};
use crate::spectrum::{self, Method, Spectrum, Target};

/// An open safetensors file whose header has been validated against it.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: String,
    file: File,
    header: Arc<Header>,
}

impl SafetensorsFile {
    /// Opens `path` and validates its header; a missing, unreadable,
    /// truncated, corrupt or lying file is a `Checkpoint` error naming it,
    /// and so is anything but a regular file (a FIFO, a device, a folder).
    pub fn open(path: &str) -> Result<Self, Error> {
        let fail = |what: &str, e: std::io::Error| {
            Error::Checkpoint(format!("{path}: cannot {what}: {e}"))
        };
        // Checked before opening: opening a FIFO blocks until a writer
        // comes, and reading a device may never end.
        let metadata = std::fs::metadata(path).map_err(|e| fail("open", e))?;
        if !metadata.is_file() {
            return Err(not_a_regular_file(path));
        }
        // The path may have been swapped since; the open cannot block, and
        // what was opened is checked again.
        let file = open_nonblocking(path).map_err(|e| fail("open", e))?;
        let metadata = file.metadata().map_err(|e| fail("stat", e))?;
        if !metadata.is_file() {
            return Err(not_a_regular_file(path));
        }
        let len = metadata.len();
        let mut length_field = [0u8; 8];
        read_exact_at(&file, &mut length_field, 0).map_err(|_| {
            Error::Checkpoint(format!(
                "{path}: file of {len} bytes is too short for a safetensors header"
            ))
        })?;
        // Checked against the file's size before the header is allocated.
        let header_len =
            safetensors::header_length(length_field, len).map_err(|e| e.context(path))?;
        let mut prefix = vec![0u8; 8 + header_len];
        prefix[..8].copy_from_slice(&length_field);
        read_exact_at(&file, &mut prefix[8..], 8).map_err(|e| fail("read the header", e))?;
        let header = parsed_header(path, &prefix, len)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            header,
        })
    }

    /// The path it was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }
}

/// Headers parsed recently, with the exact bytes and file length they were
/// parsed from: `(path, file length, header bytes, header)`, newest last.
type HeaderCache = Vec<(String, u64, Vec<u8>, Arc<Header>)>;

/// How many parsed headers are kept.
const CACHED_HEADERS: usize = 64;

/// Headers longer than this are parsed every time rather than kept.
const CACHED_HEADER_BYTES: usize = 1 << 20;

/// The header in `prefix` (length and JSON) of the `len`-byte file at
/// `path`, parsed at most once: a caller typically lists a file's tensors,
/// then asks for some of them. A cached header is reused only when the
/// file's header bytes and length are exactly those it was parsed from, so
/// the cache can never return a header the file no longer has.
fn parsed_header(path: &str, prefix: &[u8], len: u64) -> Result<Arc<Header>, Error> {
    static CACHE: Mutex<HeaderCache> = Mutex::new(Vec::new());
    let lookup = |cache: &HeaderCache| {
        cache
            .iter()
            .find(|(p, l, bytes, _)| p == path && *l == len && bytes.as_slice() == prefix)
            .map(|entry| Arc::clone(&entry.3))
    };
    if let Some(header) = lookup(&CACHE.lock().unwrap_or_else(|p| p.into_inner())) {
        return Ok(header);
    }
    let header = Arc::new(safetensors::parse_header(prefix, len).map_err(|e| e.context(path))?);
    if prefix.len() <= CACHED_HEADER_BYTES {
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(p, ..)| p != path);
        if cache.len() >= CACHED_HEADERS {
            cache.remove(0);
        }
        cache.push((path.to_owned(), len, prefix.to_vec(), Arc::clone(&header)));
    }
    Ok(header)
}

/// One tensor to compute: where it lies in which opened file, and as what
/// matrix.
#[derive(Debug)]
struct Item {
    file: usize,
    name: String,
    offset: usize,
    len: usize,
    dtype: Dtype,
    rows: usize,
    cols: usize,
}

/// Tensors of one or more safetensors files, resolved and ready to compute.
#[derive(Debug)]
pub struct TensorBatch {
    files: Vec<SafetensorsFile>,
    items: Vec<Item>,
}

impl TensorBatch {
    /// Opens each distinct file once and resolves each `(path, name, rows,
    /// cols)` request: the tensor seen as the row-major `rows x cols` matrix.
    ///
    /// Errors (the whole batch fails): an unreadable file or a missing
    /// tensor is a `Checkpoint` error, a tensor that is not F64, F32, F16 or
    /// BF16 a `DType` error, `rows * cols` other than its element count a
    /// `Shape` error.
    pub fn resolve<'a>(
        requests: impl IntoIterator<Item = (&'a str, &'a str, usize, usize)>,
    ) -> Result<Self, Error> {
        let mut files: Vec<SafetensorsFile> = Vec::new();
        let mut items = Vec::new();
        for (path, name, rows, cols) in requests {
            let file = match files.iter().position(|f| f.path == path) {
                Some(index) => index,
                None => {
                    files.push(SafetensorsFile::open(path)?);
                    files.len() - 1
                }
            };
            let header = files[file].header();
            let info = header
                .tensors
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| Error::Checkpoint(format!("{path}: no tensor named {name:?}")))?;
            if info.dtype.epsilon().is_none() {
                return Err(Error::DType(format!(
                    "{name}: expected a floating-point tensor, got {}",
                    info.dtype.name()
                )));
            }
            if rows
                .checked_mul(cols)
                .and_then(|n| n.checked_mul(info.dtype.size()))
                != Some(info.end - info.start)
            {
                return Err(Error::Shape(format!(
                    "{name}: {rows} x {cols} does not match the tensor's shape {:?}",
                    info.shape
                )));
            }
            items.push(Item {
                file,
                name: name.to_owned(),
                offset: header.data_start + info.start,
                len: info.end - info.start,
                dtype: info.dtype,
                rows,
                cols,
            });
        }
        Ok(Self { files, items })
    }

    /// `(rows, cols)` of each item, in request order.
    pub fn shapes(&self) -> Vec<(usize, usize)> {
        self.items.iter().map(|i| (i.rows, i.cols)).collect()
    }

    /// The spectra of the items `chunk` (indices in request order), their
    /// bytes read only now, one result per index: a tensor that cannot be
    /// read is that tensor's `Checkpoint` error.
    pub fn spectra(
        &self,
        chunk: &[usize],
        method: Method,
        center: bool,
        target: Target,
        par: Par,
    ) -> Vec<Result<Spectrum, Error>> {
        let bytes: Vec<Result<Vec<u8>, Error>> =
            chunk.iter().map(|&i| self.bytes(&self.items[i])).collect();
        let mut views = Vec::new();
        let mut outcome: Vec<Option<Result<Spectrum, Error>>> = Vec::new();
        for (&i, bytes) in chunk.iter().zip(&bytes) {
            let item = &self.items[i];
            match bytes
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|b| PackedMatrix::new(b, item.dtype, item.rows, item.cols))
            {
                Ok(packed) => {
                    views.push(MatrixView::Packed(packed));
                    outcome.push(None);
                }
                Err(e) => outcome.push(Some(Err(e.context(&item.name)))),
            }
        }
        let mut computed = spectrum::spectra(&views, method, center, target, par).into_iter();
        outcome
            .into_iter()
            .map(|o| o.unwrap_or_else(|| computed.next().expect("one result per view")))
            .collect()
    }

    /// The bytes of `item`, read now. The header was checked against the
    /// file's size when it was opened, so `item.len` is at most the file's
    /// size; a file shortened since is this tensor's `Checkpoint` error.
    fn bytes(&self, item: &Item) -> Result<Vec<u8>, Error> {
        let file = &self.files[item.file];
        let fail = |what: String| Error::Checkpoint(format!("{}: {what}", file.path));
        let mut bytes = zeroed_bytes(item.len).ok_or_else(|| {
            fail(format!(
                "cannot allocate {} bytes for {}",
                item.len, item.name
            ))
        })?;
        read_exact_at(&file.file, &mut bytes, item.offset as u64).map_err(|e| {
            fail(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format!(
                    "cannot read {}: the file became shorter while it was scanned",
                    item.name
                )
            } else {
                format!("cannot read {}: {e}", item.name)
            })
        })?;
        Ok(bytes)
    }
}

// Why tensors are read into memory (`pread`) rather than memory-mapped: a
// mapped file that another process truncates while the engine reads it
// raises SIGBUS, which kills the Python interpreter; no check of the file's
// size before or after the compute can close that window, and a library may
// not take over its host's signal handlers. A read of a shortened file is an
// ordinary error instead.
//
// The cost, measured on this project's 2-core AVX2 machine (heavily loaded
// by other work at the time, load average ~10) with a 600 MB tall tensor
// (150000 x 1000 float32, method "gram"): reading it costs 1.15-1.27 s
// (fresh pages plus the copy) where mapping costs ~0.01 s, but end to end,
// interleaved, pread took 14.1-20.1 s (median 16.4) and mmap 15.1-19.3 s
// (median 18.0): the read is lost in the noise of the spectrum itself. The
// price is memory: a tensor being computed is resident in the process as
// well as in the page cache. Large tensors are never chunked
// (`batch::chunkable`), so at most one per thread is resident at a time.

/// `len` zero bytes, or None when the allocation fails (a tensor larger
/// than the memory left must be an error, not an abort). Allocated zeroed,
/// so that large buffers come straight from fresh zero pages instead of
/// being written twice.
fn zeroed_bytes(len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: `layout` has a non-zero size (checked above).
    let pointer = unsafe { std::alloc::alloc_zeroed(layout) };
    if pointer.is_null() {
        return None;
    }
    // SAFETY: `pointer` was allocated by the global allocator with the
    // layout of `len` bytes, all of them initialized (to zero).
    Some(unsafe { Vec::from_raw_parts(pointer, len, len) })
}

/// The error for a path that is not a regular file.
fn not_a_regular_file(path: &str) -> Error {
    Error::Checkpoint(format!(
        "{path}: not a regular file (a folder, FIFO, socket or device cannot be a checkpoint)"
    ))
}

/// Opens `path` read-only without ever blocking: with `O_NONBLOCK` on Unix
/// (opening a FIFO that has no writer would otherwise wait forever; for a
/// regular file the flag changes nothing).
#[cfg(unix)]
fn open_nonblocking(path: &str) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Opens `path` read-only (elsewhere opening a file does not block on a
/// missing writer; the caller checks that it is a regular file).
#[cfg(not(unix))]
fn open_nonblocking(path: &str) -> std::io::Result<File> {
    File::open(path)
}

/// Fills `buf` from `file` at `offset` without touching the file's cursor
/// (so that several threads can read one `File`); a file that ends first is
/// an `UnexpectedEof` error.
#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Fills `buf` from `file` at `offset` (Windows: `seek_read` moves the
/// cursor, which nothing here relies on); a file that ends first is an
/// `UnexpectedEof` error.
#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `buf` from `file` at `offset`, elsewhere: seek, then read, under a
/// lock so that two threads cannot interleave their seeks.
#[cfg(not(any(unix, windows)))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    static CURSOR: Mutex<()> = Mutex::new(());
    let _guard = CURSOR.lock().unwrap_or_else(|p| p.into_inner());
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::{EntropySpec, Normalize};
    use faer::Mat;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system's temporary one, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "grokspec-safetensors-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).to_str().unwrap().to_owned()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The bytes of a safetensors file holding `tensors` (name, dtype, shape,
    /// data), in order, with `metadata` as `__metadata__`.
    fn safetensors_bytes(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)], metadata: &str) -> Vec<u8> {
        let mut entries = vec![format!("\"__metadata__\":{metadata}")];
        let mut offset = 0;
        for (name, dtype, shape, data) in tensors {
            entries.push(format!(
                "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{offset},{}]}}",
                offset + data.len()
            ));
            offset += data.len();
        }
        let header = format!("{{{}}}", entries.join(","));
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        for (.., data) in tensors {
            out.extend_from_slice(data);
        }
        out
    }

    /// The values every test matrix holds: small multiples of 1/4, exact in
    /// every float type (bf16 keeps 8 significant bits).
    fn values(rows: usize, cols: usize) -> Vec<f64> {
        (0..rows * cols)
            .map(|k| ((k * 7 + 3) % 23) as f64 / 4.0 - 2.5)
            .collect()
    }

    fn encode(values: &[f64], dtype: &str) -> Vec<u8> {
        values
            .iter()
            .flat_map(|&v| match dtype {
                "F64" => v.to_le_bytes().to_vec(),
                "F32" => (v as f32).to_le_bytes().to_vec(),
                "F16" => half::f16::from_f64(v).to_le_bytes().to_vec(),
                "BF16" => half::bf16::from_f64(v).to_le_bytes().to_vec(),
                _ => unreachable!(),
            })
            .collect()
    }

    fn target() -> Target {
        Target::Entropy {
            spec: EntropySpec::new(2.0, Normalize::Dim).unwrap(),
            need_rank: false,
        }
    }

    #[test]
    fn every_float_dtype_reads_as_the_same_matrix() {
        let dir = TempDir::new();
        let (rows, cols) = (6, 4);
        let v = values(rows, cols);
        let dtypes = ["F64", "F32", "F16", "BF16"];
        let tensors: Vec<_> = dtypes
            .iter()
            .map(|&d| (d, d, vec![rows, cols], encode(&v, d)))
            .collect();
        let path = dir.path("all.safetensors");
        std::fs::write(&path, safetensors_bytes(&tensors, r#"{"step":"7"}"#)).unwrap();

        let want_matrix = Mat::<f64>::from_fn(rows, cols, |i, j| v[i * cols + j]);
        let want = spectrum::spectrum(
            MatrixView::F64(want_matrix.as_ref()),
            Method::Svd,
            false,
            target(),
            Par::Seq,
        )
        .unwrap();
        // As a 6 x 4 matrix, and the same bytes as 4 x 6 (a different matrix).
        let requests: Vec<_> = dtypes
            .iter()
            .map(|&d| (path.as_str(), d, rows, cols))
            .chain([(path.as_str(), "F32", cols, rows)])
            .collect();
        let batch = TensorBatch::resolve(requests).unwrap();
        assert_eq!(batch.files.len(), 1, "one file, opened once");
        assert_eq!(batch.shapes()[4], (cols, rows));
        // Both routes: the SVD's column-major copy and the Gram route's row blocks.
        for (method, tol) in [(Method::Svd, 1e-13), (Method::Gram, 1e-9)] {
            let got = batch.spectra(&[0, 1, 2, 3, 4], method, false, target(), Par::Seq);
            for (d, g) in dtypes.iter().zip(&got) {
                let g = g.as_ref().unwrap();
                assert_eq!(g.shape, (rows, cols));
                for (a, b) in g.sigma.iter().zip(&want.sigma) {
                    assert!(
                        (a - b).abs() <= tol * want.sigma[0],
                        "{method:?} {d}: {a} vs {b}"
                    );
                }
            }
            assert_eq!(got[4].as_ref().unwrap().shape, (cols, rows));
        }
        assert_eq!(batch.files[0].header().metadata["step"], "7");
    }

    #[test]
    fn bad_requests_fail_with_the_right_error() {
        let dir = TempDir::new();
        let path = dir.path("mixed.safetensors");
        let ints = vec![0u8; 4 * 6];
        let floats = encode(&values(2, 3), "F32");
        std::fs::write(
            &path,
            safetensors_bytes(
                &[
                    ("ints", "I32", vec![2, 3], ints),
                    ("w", "F32", vec![2, 3], floats),
                ],
                "{}",
            ),
        )
        .unwrap();
        let resolve = |name, rows, cols| TensorBatch::resolve([(path.as_str(), name, rows, cols)]);
        assert!(resolve("w", 3, 2).is_ok());
        assert!(matches!(resolve("ints", 2, 3), Err(Error::DType(m)) if m.contains("I32")));
        assert!(matches!(resolve("w", 3, 3), Err(Error::Shape(m)) if m.contains("[2, 3]")));
        assert!(
            matches!(resolve("nope", 2, 3), Err(Error::Checkpoint(m)) if m.contains("no tensor"))
        );
        let missing = dir.path("missing.safetensors");
        assert!(matches!(
            TensorBatch::resolve([(missing.as_str(), "w", 2, 3)]),
            Err(Error::Checkpoint(m)) if m.contains("cannot open")
        ));
    }

    #[test]
    fn truncated_and_lying_files_are_checkpoint_errors() {
        let dir = TempDir::new();
        let good = safetensors_bytes(
            &[("w", "F32", vec![4, 4], encode(&values(4, 4), "F32"))],
            "{}",
        );
        let path = dir.path("t.safetensors");
        let open_error = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            match SafetensorsFile::open(&path) {
                Err(Error::Checkpoint(m)) => m,
                other => panic!("expected a checkpoint error, got {other:?}"),
            }
        };
        // Cut inside the data, inside the header, inside the length.
        assert!(open_error(&good[..good.len() - 1]).contains("outside"));
        assert!(open_error(&good[..20]).contains(&path));
        assert!(open_error(&good[..5]).contains("too short"));
        assert!(open_error(&[]).contains("too short"));
        // A header whose offsets point past the data.
        let mut lying = good.clone();
        let at = lying
            .windows(6)
            .position(|w| w == b"[0,64]")
            .expect("offsets in the header");
        lying[at..at + 6].copy_from_slice(b"[0,96]");
        assert!(open_error(&lying).contains("outside"));
        // Shortened after the batch was resolved: the tensor's own error, no crash.
        std::fs::write(&path, &good).unwrap();
        let batch = TensorBatch::resolve([(path.as_str(), "w", 4, 4)]).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(good.len() as u64 - 10)
            .unwrap();
        let got = batch.spectra(&[0], Method::Auto, false, target(), Par::Seq);
        assert!(
            matches!(&got[0], Err(Error::Checkpoint(m)) if m.contains("w")),
            "{got:?}"
        );
    }

    #[test]
    fn only_regular_files_are_opened_and_nothing_blocks() {
        let dir = TempDir::new();
        let folder = dir.path("folder.safetensors");
        std::fs::create_dir(&folder).unwrap();
        assert!(matches!(
            SafetensorsFile::open(&folder),
            Err(Error::Checkpoint(m)) if m.contains("not a regular file")
        ));
        #[cfg(unix)]
        {
            let fifo = dir.path("fifo.safetensors");
            let c_path = std::ffi::CString::new(fifo.clone()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
            assert!(matches!(
                SafetensorsFile::open(&fifo),
                Err(Error::Checkpoint(m)) if m.contains("not a regular file")
            ));
            // Had the path become a FIFO between the check and the open, the
            // open itself would return at once (no writer needed).
            let opened = open_nonblocking(&fifo).unwrap();
            assert!(!opened.metadata().unwrap().is_file());
        }
    }

    #[test]
    fn a_header_is_parsed_once_and_never_reused_for_other_bytes() {
        let dir = TempDir::new();
        let path = dir.path("c.safetensors");
        let one = safetensors_bytes(
            &[("a", "F32", vec![2, 2], encode(&values(2, 2), "F32"))],
            "{}",
        );
        std::fs::write(&path, &one).unwrap();
        let first = SafetensorsFile::open(&path).unwrap();
        let again = SafetensorsFile::open(&path).unwrap();
        assert!(Arc::ptr_eq(&first.header, &again.header));
        // Same length, different name: a new parse.
        let two = safetensors_bytes(
            &[("b", "F32", vec![2, 2], encode(&values(2, 2), "F32"))],
            "{}",
        );
        assert_eq!(one.len(), two.len());
        std::fs::write(&path, &two).unwrap();
        let changed = SafetensorsFile::open(&path).unwrap();
        assert_eq!(changed.header().tensors[0].name, "b");
    }
}
