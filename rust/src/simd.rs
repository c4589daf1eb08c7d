//! Runtime selection of the vector instruction set for grokspec's own kernels.
//!
//! A wheel on PyPI must run on any x86-64 CPU, so the crate is compiled for
//! the baseline (SSE2). faer's matrix products already pick AVX2 or AVX-512
//! at runtime; the kernels written here (reflectors, bulge chasing) do the
//! same through [`multiversion!`]: the generic body is compiled once more
//! inside functions that enable the wider instruction sets, and the widest
//! one the CPU supports is chosen when called.

/// Defines `fn $name(args) -> ret` that runs `$generic(args)` compiled for
/// AVX-512 when the CPU has it, else for AVX2 + FMA, else for the baseline.
///
/// `$generic` and everything its hot loops call must be `#[inline(always)]`:
/// only code inlined into the wrapper is compiled with its instruction set.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $generic:path) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                fn with_avx512($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn with_avx2($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") {
                    // SAFETY: the CPU supports every feature `with_avx512` enables (checked above).
                    return unsafe { with_avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports every feature `with_avx2` enables (checked above).
                    return unsafe { with_avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

pub(crate) use multiversion;
