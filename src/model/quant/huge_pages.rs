//! Weights the CPU reads for queries, backed by transparent huge pages where the kernel allows.
//! A query streams every linear weight once (~3 B values of the 3B model) in column order: each
//! output column of a bf16 `2048`-wide layer is one 4 KiB page, so with small pages every column
//! costs a TLB miss and, for layers larger than the second-level TLB reaches, a page walk (a
//! two-level one in a virtual machine). A weight in 2 MiB pages costs one walk per 512 columns.
//! The allocator hands out small pages unless the memory is advised (`MADV_HUGEPAGE`, the default
//! `madvise` THP policy of most distributions), and memory already written keeps its small pages
//! until `khugepaged` gets to it, minutes later; `MADV_COLLAPSE` (Linux 6.1+) rebuilds the range
//! in huge pages at once. Advice only: where the kernel refuses, the weights work as they are.

use candle_core::{CpuStorage, Storage, Tensor};

/// 2 MiB, the x86-64 and arm64 (4 KiB granule) huge page.
const HUGE_PAGE: usize = 2 << 20;

/// Asks for the whole 2 MiB pages inside `bytes` to be huge pages (no-op off Linux and for
/// ranges shorter than one). Returns the bytes advised.
pub fn advise(bytes: &[u8]) -> usize {
    let start = (bytes.as_ptr() as usize).next_multiple_of(HUGE_PAGE);
    let end = (bytes.as_ptr() as usize + bytes.len()) / HUGE_PAGE * HUGE_PAGE;
    if end <= start {
        return 0;
    }
    #[cfg(target_os = "linux")]
    {
        let len = end - start;
        // SAFETY: `[start, end)` lies inside `bytes`, memory this process has mapped; madvise
        // with these flags changes how the range is backed, never its contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            libc::madvise(start as *mut libc::c_void, len, MADV_COLLAPSE);
        }
        len
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// `MADV_COLLAPSE` (not in every libc target's constants).
#[cfg(target_os = "linux")]
const MADV_COLLAPSE: libc::c_int = 25;

/// [`advise`] for a tensor's storage when it is in host memory.
pub fn advise_tensor(t: &Tensor) -> usize {
    let (storage, _) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return 0;
    };
    let bytes: &[u8] = match cpu {
        CpuStorage::BF16(v) => bytemuck::cast_slice(v),
        CpuStorage::F16(v) => bytemuck::cast_slice(v),
        CpuStorage::F32(v) => bytemuck::cast_slice(v),
        CpuStorage::U8(v) => v,
        _ => return 0,
    };
    advise(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_covers_the_whole_huge_pages_inside_and_keeps_the_values() {
        let values: Vec<u8> = (0..7 * HUGE_PAGE + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        let advised = advise(&values);
        if cfg!(target_os = "linux") {
            // 7 MiB and a bit, at an arbitrary alignment, hold at least 6 whole 2 MiB pages.
            assert!(advised >= 6 * HUGE_PAGE, "{advised}");
            assert!(advised <= values.len());
            assert_eq!(advised % HUGE_PAGE, 0);
        }
        assert!(values
            .iter()
            .enumerate()
            .all(|(i, v)| *v == (i % 251) as u8));
        assert_eq!(
            advise(&values[..HUGE_PAGE / 2]),
            0,
            "less than a page: nothing"
        );
        let t = Tensor::from_vec(
            vec![1f32; 3 * HUGE_PAGE / 4 + 7],
            3 * HUGE_PAGE / 4 + 7,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        if cfg!(target_os = "linux") {
            assert!(advise_tensor(&t) >= HUGE_PAGE);
        }
        assert_eq!(
            t.sum_all().unwrap().to_scalar::<f32>().unwrap(),
            (3 * HUGE_PAGE / 4 + 7) as f32
        );
    }
}
