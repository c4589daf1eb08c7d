//! Runtime selection of the vector instruction set for grokspec's own kernels.
//!
//! A wheel on PyPI must run on any x86-64 CPU, so the crate is compiled for
//! the baseline (SSE2). faer's matrix products already pick AVX2 or AVX-512
//! at runtime; the kernels written here (reflectors, bulge chasing) do the
//! same through [`multiversion!`]: the generic body is compiled once more
//! inside functions that enable the wider instruction sets, and the widest
//! one the CPU supports is chosen when called.
//!
//! `GROKSPEC_ISA=avx512|avx2|portable` (read once, at the first call) forces a
//! narrower path so that every path can be measured on one machine; a path
//! the CPU lacks, or an unknown value, falls back to the widest one it has.
//! It governs grokspec's own kernels only: faer's matrix products keep their
//! own runtime choice.

use std::sync::OnceLock;

/// The instruction-set path of grokspec's hand-written kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F + VL (with AVX2 and FMA).
    Avx512,
    /// AVX2 + FMA.
    Avx2,
    /// The baseline the crate is compiled for (SSE2 on x86-64), autovectorized.
    Portable,
}

impl Isa {
    /// The name `GROKSPEC_ISA` accepts for this path.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
            Self::Portable => "portable",
        }
    }
}

/// The widest path this CPU supports.
fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if avx2
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Isa::Avx512;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// Whether kernels written in AVX2 + FMA intrinsics may run: on x86-64, on
/// any path but the portable one (both wider paths require AVX2 and FMA).
pub fn avx2_fma() -> bool {
    cfg!(target_arch = "x86_64") && isa() != Isa::Portable
}

/// The path in use: the widest the CPU supports, narrowed by `GROKSPEC_ISA`.
pub fn isa() -> Isa {
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let best = detected();
        let rank = |isa: Isa| match isa {
            Isa::Portable => 0,
            Isa::Avx2 => 1,
            Isa::Avx512 => 2,
        };
        let wanted = match std::env::var("GROKSPEC_ISA").as_deref() {
            Ok("avx512") => Isa::Avx512,
            Ok("avx2") => Isa::Avx2,
            Ok("portable") => Isa::Portable,
            _ => best,
        };
        // Never more than the CPU has: that would be undefined behaviour.
        if rank(wanted) <= rank(best) {
            wanted
        } else {
            best
        }
    })
}

/// Defines `fn $name(args) -> ret` that runs `$generic(args)` compiled for
/// the path [`isa`] chose: AVX-512, AVX2 + FMA, or the baseline.
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
                match $crate::simd::isa() {
                    // SAFETY: `isa` only answers a path whose features the CPU has.
                    $crate::simd::Isa::Avx512 => return unsafe { with_avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::simd::Isa::Avx2 => return unsafe { with_avx2($($arg),*) },
                    $crate::simd::Isa::Portable => {}
                }
            }
            $generic($($arg),*)
        }
    };
}

pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chosen_path_is_one_the_cpu_has() {
        let rank = |isa: Isa| match isa {
            Isa::Portable => 0,
            Isa::Avx2 => 1,
            Isa::Avx512 => 2,
        };
        assert!(rank(isa()) <= rank(detected()));
        assert!(["avx512", "avx2", "portable"].contains(&isa().name()));
    }
}
