//! Segment files: immutable, memory-mapped page vectors. One file per commit (or compaction).
//!
//! Layout (little-endian): a 128-byte header (magic, format version, dim, block size, page count,
//! table checksum, header checksum), a table of 128-byte page entries, then one 64-byte-aligned
//! span per page: f16 vectors packed in 16-token blocks (dimension-major within a block, padding
//! tokens zero), 1-bit sign codes (token-major, `code_bytes(dim)` per token), then a metadata blob
//! (page text, pooled-vector patch members). Every byte of the file is under a checksum: header
//! and table by the header, each span (padding included) by its entry.

use super::file_identity::FileIdentity;
use super::format::{
    corrupt, crc32, io_err, IndexError, LeReader, Result, BLOCK_TOKENS, FORMAT_VERSION,
};
use super::hooks;
use memmap2::Mmap;
use rayon::prelude::*;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"PSGTSEG\0";
const HEADER_LEN: usize = 128;
const ENTRY_LEN: usize = 128;
const ALIGN: usize = 64;

/// Bytes of sign codes per token: whole u64 words so the Hamming kernel reads words.
pub fn code_bytes(dim: usize) -> usize {
    dim.div_ceil(64) * 8
}

pub fn n_blocks(n_tokens: usize) -> usize {
    n_tokens.div_ceil(BLOCK_TOKENS)
}

/// One page ready to be written: vectors already packed and coded.
#[derive(Clone, Debug)]
pub struct PageData {
    pub page_id: u64,
    pub file_hash: [u8; 32],
    pub page_no: u32,
    pub n_tokens: u32,
    pub image_rows: Range<u32>,
    pub grid: (u32, u32),
    /// f16 bits, `n_blocks × dim × 16`.
    pub packed: Vec<u16>,
    pub codes: Vec<u8>,
    pub meta: PageMeta,
}

/// Variable-length per-page data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PageMeta {
    pub text: String,
    /// For pooled pages: per image vector (in row order), the merged-patch indices it stands for.
    /// Empty when the page is not pooled (image row i is patch i).
    pub members: Vec<Vec<u32>>,
}

impl PageMeta {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.text.len());
        out.extend_from_slice(&(self.text.len() as u32).to_le_bytes());
        out.extend_from_slice(self.text.as_bytes());
        out.extend_from_slice(&(self.members.len() as u32).to_le_bytes());
        for m in &self.members {
            out.extend_from_slice(&(m.len() as u32).to_le_bytes());
            for p in m {
                out.extend_from_slice(&p.to_le_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = LeReader::new(bytes);
        let n = r.u32()? as usize;
        let text = std::str::from_utf8(r.take(n)?).ok()?.to_string();
        let n_members = r.u32()? as usize;
        let mut members = Vec::with_capacity(n_members.min(r.remaining() / 4));
        for _ in 0..n_members {
            let k = r.u32()? as usize;
            if k > r.remaining() / 4 {
                return None;
            }
            members.push((0..k).map(|_| r.u32()).collect::<Option<Vec<u32>>>()?);
        }
        (r.remaining() == 0).then_some(Self { text, members })
    }
}

/// A page's entry in a segment's table.
#[derive(Clone, Debug, PartialEq)]
pub struct PageEntry {
    pub page_id: u64,
    pub file_hash: [u8; 32],
    pub page_no: u32,
    pub n_tokens: u32,
    pub image_rows: Range<u32>,
    pub grid: (u32, u32),
    span_offset: u64,
    span_len: u64,
    meta_len: u32,
    crc: u32,
}

fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// Writes a complete segment of `n_pages` pages (streamed: bodies first, then the table and the
/// header over the zeroed front) and fsyncs it. Nothing refers to it until a manifest commits it.
pub fn write_segment(
    path: &Path,
    dim: usize,
    n_pages: usize,
    pages: impl Iterator<Item = Result<PageData>>,
) -> Result<u64> {
    let table_end = HEADER_LEN + n_pages * ENTRY_LEN;
    let mut offset = align_up(table_end);
    let file = File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    hooks::before_write().map_err(io_err(path))?;
    w.write_all(&vec![0u8; offset]).map_err(io_err(path))?;
    let mut table = Vec::with_capacity(n_pages * ENTRY_LEN);
    let mut body = Vec::new();
    for p in pages {
        let p = p?;
        if table.len() >= n_pages * ENTRY_LEN {
            return Err(IndexError::Invalid(format!(
                "{}: more pages than announced",
                path.display()
            )));
        }
        let vec_len = n_blocks(p.n_tokens as usize) * dim * BLOCK_TOKENS * 2;
        if p.packed.len() * 2 != vec_len || p.codes.len() != p.n_tokens as usize * code_bytes(dim) {
            return Err(IndexError::Invalid(format!(
                "page id {}: vector buffers have the wrong size",
                p.page_id
            )));
        }
        let meta = p.meta.encode();
        body.clear();
        body.extend_from_slice(bytemuck::cast_slice(&p.packed));
        body.extend_from_slice(&p.codes);
        body.extend_from_slice(&meta);
        body.resize(align_up(body.len()), 0);
        hooks::before_write().map_err(io_err(path))?;
        w.write_all(&body).map_err(io_err(path))?;

        let start = table.len();
        table.extend_from_slice(&p.page_id.to_le_bytes());
        table.extend_from_slice(&p.file_hash);
        for v in [
            p.page_no,
            p.n_tokens,
            p.image_rows.start,
            p.image_rows.end,
            p.grid.0,
            p.grid.1,
        ] {
            table.extend_from_slice(&v.to_le_bytes());
        }
        table.extend_from_slice(&(offset as u64).to_le_bytes());
        table.extend_from_slice(&(body.len() as u64).to_le_bytes());
        table.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        table.extend_from_slice(&crc32(&body).to_le_bytes());
        table.resize(start + ENTRY_LEN, 0);
        offset += body.len();
    }
    if table.len() != n_pages * ENTRY_LEN {
        return Err(IndexError::Invalid(format!(
            "{}: fewer pages than announced",
            path.display()
        )));
    }
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    for v in [
        FORMAT_VERSION,
        dim as u32,
        BLOCK_TOKENS as u32,
        n_pages as u32,
        crc32(&table),
    ] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    header.resize(HEADER_LEN - 4, 0);
    let hcrc = crc32(&header);
    header.extend_from_slice(&hcrc.to_le_bytes());
    let mut file = w.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    hooks::before_write().map_err(io_err(path))?;
    file.write_all(&header).map_err(io_err(path))?;
    file.write_all(&table).map_err(io_err(path))?;
    hooks::step("fsync segment");
    file.sync_all().map_err(io_err(path))?;
    Ok(offset as u64)
}

/// A memory-mapped, structurally validated segment.
pub struct SegmentReader {
    pub path: PathBuf,
    pub dim: usize,
    pub entries: Vec<PageEntry>,
    /// The file as it was when mapped: a reader reuses this segment while it is unchanged.
    pub identity: FileIdentity,
    mmap: Mmap,
}

impl std::fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SegmentReader({}, {} pages)",
            self.path.display(),
            self.entries.len()
        )
    }
}

impl SegmentReader {
    /// Maps and validates a segment. The header and table are always checked; with
    /// `verify_data` every page span's checksum is recomputed too (all cores).
    pub fn open(path: &Path, dim: usize, verify_data: bool) -> Result<Self> {
        let file = File::open(path).map_err(io_err(path))?;
        let metadata = file.metadata().map_err(io_err(path))?;
        let identity = FileIdentity::from_metadata(&metadata);
        let len = metadata.len() as usize;
        if len < HEADER_LEN {
            return Err(corrupt(
                path,
                format!("segment is {len} bytes, shorter than its header"),
            ));
        }
        // SAFETY: segment files are immutable once written (new data goes to new files, removal
        // unlinks), so the mapping cannot change under us.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        let bytes: &[u8] = &mmap;
        let header = &bytes[..HEADER_LEN];
        if &header[..8] != MAGIC {
            return Err(IndexError::Foreign {
                path: path.into(),
                what: "bad segment magic".into(),
            });
        }
        let stored_hcrc =
            u32::from_le_bytes(header[HEADER_LEN - 4..].try_into().unwrap_or_default());
        let mut r = LeReader::new(&header[8..]);
        let (version, seg_dim, block, n_pages, table_crc) =
            (r.u32(), r.u32(), r.u32(), r.u32(), r.u32());
        let version = version.unwrap_or(0);
        if crc32(&header[..HEADER_LEN - 4]) != stored_hcrc {
            return Err(corrupt(path, "segment header checksum mismatch"));
        }
        if version > FORMAT_VERSION {
            return Err(IndexError::NewerVersion {
                path: path.into(),
                found: version,
            });
        }
        if version != FORMAT_VERSION {
            return Err(corrupt(
                path,
                format!("segment format version {version} unknown"),
            ));
        }
        let (seg_dim, block, n_pages, table_crc) = (
            seg_dim.unwrap_or(0) as usize,
            block.unwrap_or(0) as usize,
            n_pages.unwrap_or(0) as usize,
            table_crc.unwrap_or(0),
        );
        if seg_dim != dim || block != BLOCK_TOKENS {
            return Err(corrupt(path, format!("segment has dim {seg_dim} block {block}, index expects dim {dim} block {BLOCK_TOKENS}")));
        }
        let table_end = n_pages
            .checked_mul(ENTRY_LEN)
            .and_then(|t| t.checked_add(HEADER_LEN))
            .filter(|&e| e <= len)
            .ok_or_else(|| corrupt(path, "page table runs past the end of the file"))?;
        let table = &bytes[HEADER_LEN..table_end];
        if crc32(table) != table_crc {
            return Err(corrupt(path, "page table checksum mismatch"));
        }
        let mut entries = Vec::with_capacity(n_pages);
        let mut expect_offset = align_up(table_end) as u64;
        for (i, e) in table.chunks_exact(ENTRY_LEN).enumerate() {
            let bad = |what: &str| corrupt(path, format!("page entry {i}: {what}"));
            let entry = parse_entry(e).ok_or_else(|| bad("unreadable"))?;
            let min = (n_blocks(entry.n_tokens as usize) * dim * BLOCK_TOKENS * 2
                + entry.n_tokens as usize * code_bytes(dim)
                + entry.meta_len as usize) as u64;
            if entry.span_offset != expect_offset
                || entry.span_len < min
                || entry.span_len % ALIGN as u64 != 0
            {
                return Err(bad("span out of place"));
            }
            if entry.image_rows.start > entry.image_rows.end
                || entry.image_rows.end > entry.n_tokens
                || entry.page_no == 0
            {
                return Err(bad("image rows or page number out of range"));
            }
            expect_offset = entry
                .span_offset
                .checked_add(entry.span_len)
                .ok_or_else(|| bad("span overflows"))?;
            entries.push(entry);
        }
        if expect_offset != len as u64 {
            return Err(corrupt(
                path,
                format!("file is {len} bytes, its pages end at {expect_offset}"),
            ));
        }
        let reader = Self {
            path: path.into(),
            dim,
            entries,
            identity,
            mmap,
        };
        if verify_data {
            reader.verify_spans()?;
        }
        Ok(reader)
    }

    /// Recomputes every page span's checksum.
    pub fn verify_spans(&self) -> Result<()> {
        (0..self.entries.len())
            .into_par_iter()
            .try_for_each(|i| self.verify_page(i))
    }

    /// Recomputes page `i`'s checksum: cheap enough to run on every page a search returns.
    pub fn verify_page(&self, i: usize) -> Result<()> {
        let e = &self.entries[i];
        if crc32(self.span(e)) == e.crc {
            return Ok(());
        }
        Err(corrupt(
            &self.path,
            format!("page entry {i} (page id {}) checksum mismatch", e.page_id),
        ))
    }

    fn span(&self, e: &PageEntry) -> &[u8] {
        &self.mmap[e.span_offset as usize..(e.span_offset + e.span_len) as usize]
    }

    /// f16 bits of page `i`, `n_blocks × dim × 16`.
    pub fn packed(&self, i: usize) -> &[u16] {
        let e = &self.entries[i];
        let n = n_blocks(e.n_tokens as usize) * self.dim * BLOCK_TOKENS;
        // Spans start 64-byte aligned inside a page-aligned mapping, so the cast cannot fail.
        bytemuck::cast_slice(&self.span(e)[..n * 2])
    }

    pub fn codes(&self, i: usize) -> &[u8] {
        let e = &self.entries[i];
        let start = n_blocks(e.n_tokens as usize) * self.dim * BLOCK_TOKENS * 2;
        &self.span(e)[start..start + e.n_tokens as usize * code_bytes(self.dim)]
    }

    pub fn meta(&self, i: usize) -> Result<PageMeta> {
        let e = &self.entries[i];
        let start = n_blocks(e.n_tokens as usize) * self.dim * BLOCK_TOKENS * 2
            + e.n_tokens as usize * code_bytes(self.dim);
        PageMeta::decode(&self.span(e)[start..start + e.meta_len as usize]).ok_or_else(|| {
            corrupt(
                &self.path,
                format!("metadata of page id {} unreadable", e.page_id),
            )
        })
    }

    /// This segment copied into anonymous memory advised for transparent huge pages
    /// (`MADV_HUGEPAGE`): the same bytes and entries, no longer read through the page cache's
    /// 4 KiB mappings. An exact query streams every page once, and with 4 KiB pages each 192 KiB
    /// page costs ~48 TLB misses (two-level page walks in a virtual machine). Costs the file's
    /// size in RAM on top of the page cache; the kernel may still hand out small pages. For
    /// measuring (`bench search --exact-variants huge-pages`); it made no measurable difference to
    /// exact search (`bench/gpu-notes.md`), so the app keeps its segments mapped.
    pub fn resident_copy(&self) -> Result<SegmentReader> {
        let mut anon = huge_page_memory(self.mmap.len()).map_err(io_err(&self.path))?;
        const PIECE: usize = 4 << 20;
        anon.par_chunks_mut(PIECE)
            .zip(self.mmap.par_chunks(PIECE))
            .for_each(|(d, s)| d.copy_from_slice(s));
        Ok(SegmentReader {
            path: self.path.clone(),
            dim: self.dim,
            entries: self.entries.clone(),
            identity: self.identity,
            mmap: anon.make_read_only().map_err(io_err(&self.path))?,
        })
    }

    pub fn file_len(&self) -> u64 {
        self.mmap.len() as u64
    }
}

/// `len` zeroed bytes of anonymous memory advised for transparent huge pages (`MADV_HUGEPAGE`).
/// Advice only: where THP is off the memory still works, just in small pages.
pub fn huge_page_memory(len: usize) -> std::io::Result<memmap2::MmapMut> {
    let anon = memmap2::MmapMut::map_anon(len)?;
    #[cfg(target_os = "linux")]
    let _ = anon.advise(memmap2::Advice::HugePage);
    Ok(anon)
}

/// Fuzzing only: rewrites every checksum of a (mutated) segment so the fuzzer gets past them to
/// the parsing behind: span CRCs in the table entries, the table CRC, the header CRC.
#[cfg(fuzzing)]
pub fn fix_checksums(bytes: &mut [u8]) {
    let u64_at = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .map(|x| u64::from_le_bytes(x.try_into().unwrap_or_default()))
    };
    if bytes.len() < HEADER_LEN {
        return;
    }
    let n_pages = u32::from_le_bytes(bytes[20..24].try_into().unwrap_or_default()) as usize;
    let table_end = (HEADER_LEN + n_pages.saturating_mul(ENTRY_LEN)).min(bytes.len());
    let n = (table_end - HEADER_LEN) / ENTRY_LEN;
    for i in 0..n {
        let e = HEADER_LEN + i * ENTRY_LEN;
        let (Some(off), Some(len)) = (u64_at(bytes, e + 64), u64_at(bytes, e + 72)) else {
            continue;
        };
        let span = (off as usize)..(off as usize).saturating_add(len as usize);
        if span.end <= bytes.len() {
            let c = crc32(&bytes[span]);
            bytes[e + 84..e + 88].copy_from_slice(&c.to_le_bytes());
        }
    }
    let tc = crc32(&bytes[HEADER_LEN..HEADER_LEN + n * ENTRY_LEN]);
    bytes[24..28].copy_from_slice(&tc.to_le_bytes());
    let hc = crc32(&bytes[..HEADER_LEN - 4]);
    bytes[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&hc.to_le_bytes());
}

fn parse_entry(e: &[u8]) -> Option<PageEntry> {
    let mut r = LeReader::new(e);
    let page_id = r.u64()?;
    let file_hash: [u8; 32] = r.take(32)?.try_into().ok()?;
    let (page_no, n_tokens, is, ie, gh, gw) =
        (r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?);
    let (span_offset, span_len, meta_len, crc) = (r.u64()?, r.u64()?, r.u32()?, r.u32()?);
    Some(PageEntry {
        page_id,
        file_hash,
        page_no,
        n_tokens,
        image_rows: is..ie,
        grid: (gh, gw),
        span_offset,
        span_len,
        meta_len,
        crc,
    })
}

impl SegmentReader {
    /// Page `i` as writable data (for compaction).
    pub fn page_data(&self, i: usize) -> Result<PageData> {
        let e = &self.entries[i];
        Ok(PageData {
            page_id: e.page_id,
            file_hash: e.file_hash,
            page_no: e.page_no,
            n_tokens: e.n_tokens,
            image_rows: e.image_rows.clone(),
            grid: e.grid,
            packed: self.packed(i).to_vec(),
            codes: self.codes(i).to_vec(),
            meta: self.meta(i)?,
        })
    }
}
