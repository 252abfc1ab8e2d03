//! Which vector code may run, decided once per process, and the one way a
//! loop is compiled for it.
//!
//! The sorts and the rewiring have loops written three times over by the
//! compiler (AVX-512, AVX2, baseline) and kernels written with AVX-512 or
//! AVX2 intrinsics. Every one of them asks here whether its instructions
//! may run, so that `PA_ONNX_PORTABLE` turns all of them off at once: the
//! output must be the same bits either way, and the snapshot and the tests
//! check that it is.

use std::sync::OnceLock;

/// Whether the environment variable `PA_ONNX_PORTABLE` is set: then no
/// vector code beyond the baseline runs, as on a CPU without AVX2 or
/// AVX-512. The output must not change, and a test checks that it does not.
pub(crate) fn portable() -> bool {
    static PORTABLE: OnceLock<bool> = OnceLock::new();
    *PORTABLE.get_or_init(|| std::env::var_os("PA_ONNX_PORTABLE").is_some())
}

/// Whether AVX2 code may run: the CPU has it and [`portable`] is off.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2() -> bool {
    !portable() && std::arch::is_x86_feature_detected!("avx2")
}

/// Whether this CPU can run the AVX-512 code of [`super::simd`] (and
/// [`portable`] is off).
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            !portable()
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("popcnt")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Calls `body` compiled for the widest vector unit this CPU has: AVX-512,
/// AVX2, or the baseline (always the baseline with [`portable`]).
/// The loops it is used for involve only IEEE operations and conversions
/// per element, in the order the code gives (Rust never fuses a multiply
/// and an add on its own), so every width gives the same bits.
macro_rules! widest {
    ($body:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        if !$crate::sort::cpu::portable() {
            if std::arch::is_x86_feature_detected!("avx512f") {
                #[target_feature(enable = "avx512f")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                // SAFETY: the CPU supports AVX-512F.
                return unsafe { wide($($arg),*) };
            }
            if $crate::sort::cpu::avx2() {
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                // SAFETY: the CPU supports AVX2.
                return unsafe { wide($($arg),*) };
            }
        }
        $body($($arg),*)
    }};
}
pub(crate) use widest;

/// Calls `body` (generic over the type parameters given in angle
/// brackets) compiled for AVX2 where [`avx2`] allows it, else for the
/// baseline.
macro_rules! avx2_or_baseline {
    ($body:ident<$($gen:ident),*>($($arg:ident: $ty:ty),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        if $crate::sort::cpu::avx2() {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2<$($gen),*>($($arg: $ty),*) {
                $body($($arg),*)
            }
            // SAFETY: the CPU supports AVX2.
            return unsafe { avx2($($arg),*) };
        }
        $body($($arg),*)
    }};
}
pub(crate) use avx2_or_baseline;
