//! The ONNX Runtime backend, on CPU or CUDA, loaded at run time.
//!
//! ONNX Runtime is the engine most users deploy with, so agreeing with it
//! matters more than agreeing with anything else. It is loaded dynamically
//! (see `ortlib.rs` for where from) and allows a single environment per
//! process, so the first successful load is kept for the life of the process
//! and every later session shares it. A failure that leaves nothing behind
//! (file missing, not a library, too old) may be retried with another path; a
//! failure after the library is in (environment creation) is remembered and
//! returned again.
//!
//! CUDA is never faked: the CUDA execution provider is registered with
//! `error_on_failure`, and any sign that it is not there makes the backend
//! [`BackendError::Unavailable`] instead of quietly running on the CPU.

use std::ffi::{c_char, c_int, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ::ort::environment::Environment;
use ::ort::session::builder::{AutoDevicePolicy, SessionBuilder};
use ::ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::ortlib;
use super::{
    check_inputs, BackendError, BackendKind, BackendOptions, HostTensor, IoSpec, OrtInfo,
    TensorData,
};

/// The process-wide ONNX Runtime, once loaded.
struct Runtime {
    env: Environment,
    info: OrtInfo,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    site_packages: Option<PathBuf>,
}

enum State {
    Unloaded,
    Ready(Arc<Runtime>),
    /// The library is loaded but unusable; ONNX Runtime cannot be reloaded.
    Broken(OrtError),
}

static STATE: Mutex<State> = Mutex::new(State::Unloaded);

/// Why ONNX Runtime, or a value passed to or from it, cannot be used.
/// Messages that come from the library itself are kept as it wrote them.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum OrtError {
    #[error(transparent)]
    NotFound(#[from] ortlib::NotFound),
    #[error(
        "ONNX Runtime is already loaded from {} in this process and cannot be switched to {}",
        .loaded.display(),
        .wanted.display()
    )]
    Switched { loaded: PathBuf, wanted: PathBuf },
    #[error("cannot load ONNX Runtime from {} (found via {via}): {detail}", .path.display())]
    CannotLoad {
        path: PathBuf,
        via: &'static str,
        detail: String,
    },
    #[error(
        "ONNX Runtime from {} loaded, but creating its environment failed: {detail}",
        .path.display()
    )]
    NoEnvironment { path: PathBuf, detail: String },
    /// An error status or message returned by ONNX Runtime.
    #[error("{0}")]
    Runtime(String),
    #[error("negative dimension {0}")]
    NegativeDim(i64),
    #[error("not a tensor but {0}")]
    NotATensor(String),
    #[error("type {0} cannot be compared by pa-onnx")]
    Unsupported(String),
    #[error(transparent)]
    Shape(#[from] super::ShapeMismatch),
}

impl OrtError {
    fn runtime(e: impl std::fmt::Display) -> OrtError {
        OrtError::Runtime(e.to_string())
    }
}

/// The loaded runtime, loading it on first use.
fn runtime(opts: &BackendOptions) -> Result<Arc<Runtime>, OrtError> {
    let mut state = STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match &*state {
        State::Ready(rt) => {
            if let Some(explicit) = &opts.ort_lib {
                let wanted = ortlib::locate(Some(explicit))?;
                if !crate::fs::same_file(&wanted.path, &rt.info.library) {
                    return Err(OrtError::Switched {
                        loaded: rt.info.library.clone(),
                        wanted: wanted.path,
                    });
                }
            }
            return Ok(rt.clone());
        }
        State::Broken(why) => return Err(why.clone()),
        State::Unloaded => {}
    }

    let located = ortlib::locate(opts.ort_lib.as_deref())?;
    // An absolute path keeps `ort` from resolving it against the executable's folder.
    let path = located
        .path
        .canonicalize()
        .unwrap_or_else(|_| located.path.clone());
    let builder = ::ort::init_from(&path).map_err(|e| OrtError::CannotLoad {
        path: path.clone(),
        via: located.found_via,
        detail: e.to_string(),
    })?;
    let env = match builder.with_name("pa-onnx").with_telemetry(false).build() {
        Ok(env) => env,
        Err(e) => {
            let why = OrtError::NoEnvironment {
                path: path.clone(),
                detail: e.to_string(),
            };
            *state = State::Broken(why.clone());
            return Err(why);
        }
    };
    let version = library_version(&path).unwrap_or_else(|e| format!("unknown ({e})"));
    let providers = available_providers().unwrap_or_default();
    let rt = Arc::new(Runtime {
        env,
        info: OrtInfo {
            library: path,
            found_via: located.found_via.to_string(),
            version,
            providers,
            cuda_feature: cfg!(feature = "cuda"),
        },
        site_packages: located.site_packages,
    });
    *state = State::Ready(rt.clone());
    Ok(rt)
}

pub(super) fn info(opts: &BackendOptions) -> Result<OrtInfo, BackendError> {
    runtime(opts)
        .map(|rt| rt.info.clone())
        .map_err(|e| BackendError::unavailable(BackendKind::OrtCpu, e.to_string()))
}

/// The library's own version string (`OrtGetApiBase()->GetVersionString()`).
fn library_version(path: &Path) -> Result<String, OrtError> {
    // SAFETY: the same file was just loaded by `ort::init_from`, which checked
    // that it exports `OrtGetApiBase`; opening it again only bumps a refcount,
    // and the returned string is static inside the library.
    unsafe {
        let lib = libloading::Library::new(path).map_err(OrtError::runtime)?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ::ort::sys::OrtApiBase> =
            lib.get(b"OrtGetApiBase").map_err(OrtError::runtime)?;
        let base = get_base();
        if base.is_null() {
            return Err(OrtError::runtime("OrtGetApiBase returned null"));
        }
        let version = ((*base).GetVersionString)();
        if version.is_null() {
            return Err(OrtError::runtime("no version string"));
        }
        Ok(CStr::from_ptr(version).to_string_lossy().into_owned())
    }
}

/// Execution providers compiled into the loaded library.
fn available_providers() -> Result<Vec<String>, OrtError> {
    let api = ::ort::api();
    let mut list: *mut *mut c_char = std::ptr::null_mut();
    let mut len: c_int = 0;
    // SAFETY: the runtime is loaded (callers hold a `Runtime`); the list is
    // read before it is released, and each entry is a NUL-terminated string.
    unsafe {
        check_status((api.GetAvailableProviders)(&mut list, &mut len))?;
        if list.is_null() {
            return Ok(Vec::new());
        }
        let names = (0..len.max(0) as usize)
            .map(|i| CStr::from_ptr(*list.add(i)).to_string_lossy().into_owned())
            .collect();
        let _ = check_status((api.ReleaseAvailableProviders)(list, len));
        Ok(names)
    }
}

/// Turns an `OrtStatus` into a Result, releasing it.
///
/// # Safety
/// `status` must come from an ONNX Runtime API call of the loaded library.
unsafe fn check_status(status: ::ort::sys::OrtStatusPtr) -> Result<(), OrtError> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ::ort::api();
    let msg = CStr::from_ptr((api.GetErrorMessage)(status.0))
        .to_string_lossy()
        .into_owned();
    (api.ReleaseStatus)(status.0);
    Err(OrtError::Runtime(msg))
}

/// A model loaded in ONNX Runtime.
pub(super) struct OrtSession {
    kind: BackendKind,
    session: ::ort::session::Session,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    provider: &'static str,
}

/// A session of ONNX Runtime itself on `kind`, for callers that keep
/// values on the device between runs (I/O binding), with the name of the
/// execution provider it runs on.
pub(crate) fn raw_session(
    kind: BackendKind,
    model_path: &Path,
    opts: &BackendOptions,
) -> Result<(::ort::session::Session, &'static str), BackendError> {
    if kind == BackendKind::Tract {
        // Reached through the device trainer, which needs I/O binding.
        return Err(BackendError::unavailable(
            kind,
            "this needs ONNX Runtime (ort-cpu or ort-cuda); tract keeps no values between runs",
        ));
    }
    if kind == BackendKind::OrtCuda && !cfg!(feature = "cuda") {
        return Err(BackendError::unavailable(
            kind,
            "built without the `cuda` feature",
        ));
    }
    let rt = runtime(opts).map_err(|e| BackendError::unavailable(kind, e.to_string()))?;
    let load_err = |e: ::ort::Error<SessionBuilder>| BackendError::load_failed(kind, e.to_string());
    let mut builder = ::ort::session::Session::builder(&rt.env)
        .map_err(|e| BackendError::load_failed(kind, e.to_string()))?;
    if let Some(threads) = opts.intra_threads {
        builder = builder.with_intra_threads(threads).map_err(load_err)?;
    }
    let provider = match kind {
        // Without this, ONNX Runtime may pick another device on its own.
        BackendKind::OrtCpu => {
            builder = builder
                .with_auto_device(AutoDevicePolicy::PreferCPU)
                .map_err(load_err)?;
            "CPUExecutionProvider"
        }
        BackendKind::OrtCuda => {
            builder = register_cuda(builder, &rt)?;
            "CUDAExecutionProvider"
        }
        BackendKind::Tract => unreachable!("refused above"),
    };
    let session = builder.commit_from_file(model_path).map_err(|e| {
        let reason = e.to_string();
        if kind == BackendKind::OrtCuda && mentions_cuda(&reason) {
            BackendError::unavailable(kind, format!("CUDA could not be used: {reason}"))
        } else {
            BackendError::load_failed(kind, reason)
        }
    })?;
    Ok((session, provider))
}

impl OrtSession {
    pub(super) fn open(
        kind: BackendKind,
        model_path: &Path,
        opts: &BackendOptions,
    ) -> Result<OrtSession, BackendError> {
        let (session, provider) = raw_session(kind, model_path, opts)?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| io_spec(o.name(), o.dtype()))
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| io_spec(o.name(), o.dtype()))
            .collect();
        Ok(OrtSession {
            kind,
            session,
            inputs,
            outputs,
            provider,
        })
    }
}

fn mentions_cuda(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["cuda", "cudnn", "cublas", "gpu"]
        .iter()
        .any(|w| m.contains(w))
}

#[cfg(feature = "cuda")]
fn register_cuda(builder: SessionBuilder, rt: &Runtime) -> Result<SessionBuilder, BackendError> {
    let kind = BackendKind::OrtCuda;
    if !rt
        .info
        .providers
        .iter()
        .any(|p| p == "CUDAExecutionProvider")
    {
        return Err(BackendError::unavailable(
            kind,
            format!(
                "ONNX Runtime {} at {} has no CUDA execution provider (it has: {}); install onnxruntime-gpu",
                rt.info.version,
                rt.info.library.display(),
                rt.info.providers.join(", ")
            ),
        ));
    }
    if let Some(site) = &rt.site_packages {
        preload_nvidia_wheels(site);
    }
    // TF32 would make CUDA disagree with the CPU backends by ~1e-3 relative.
    let cuda = ::ort::ep::CUDA::default()
        .with_tf32(false)
        .build()
        .error_on_failure();
    builder.with_execution_providers([cuda]).map_err(|e| {
        BackendError::unavailable(
            kind,
            format!("the CUDA execution provider could not be registered: {e}"),
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn register_cuda(_: SessionBuilder, _: &Runtime) -> Result<SessionBuilder, BackendError> {
    Err(BackendError::unavailable(
        BackendKind::OrtCuda,
        "built without the `cuda` feature",
    ))
}

/// Loads the CUDA/cuDNN libraries of the `nvidia-*` wheels once, globally, so
/// that ONNX Runtime's CUDA provider finds them without `LD_LIBRARY_PATH`.
#[cfg(feature = "cuda")]
fn preload_nvidia_wheels(site_packages: &Path) {
    use std::sync::OnceLock;
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        #[cfg(unix)]
        {
            use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_LAZY};
            let mut pending = ortlib::nvidia_wheel_libraries(site_packages);
            // The libraries depend on each other; load what can be loaded and
            // retry the rest until a round makes no progress.
            loop {
                let before = pending.len();
                pending.retain(|lib| {
                    // SAFETY: these are the CUDA runtime libraries the CUDA
                    // provider would load itself; they stay loaded for good.
                    match unsafe { Library::open(Some(lib), RTLD_LAZY | RTLD_GLOBAL) } {
                        Ok(handle) => {
                            std::mem::forget(handle);
                            false
                        }
                        Err(_) => true,
                    }
                });
                if pending.is_empty() || pending.len() == before {
                    break;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = site_packages;
    });
}

impl super::Session for OrtSession {
    fn backend(&self) -> BackendKind {
        self.kind
    }

    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn run(
        &mut self,
        inputs: &[(String, HostTensor)],
    ) -> Result<Vec<(String, HostTensor)>, BackendError> {
        let kind = self.kind;
        let ordered = check_inputs(kind, &self.inputs, inputs)?;
        let mut values: Vec<(String, DynValue)> = Vec::with_capacity(ordered.len());
        for (spec, tensor) in self.inputs.iter().zip(ordered) {
            values.push((
                spec.name.clone(),
                to_ort(tensor).map_err(|e| BackendError::run_failed(kind, e.to_string()))?,
            ));
        }
        let results = self
            .session
            .run(values)
            .map_err(|e| BackendError::run_failed(kind, e.to_string()))?;
        let mut out = Vec::with_capacity(self.outputs.len());
        for spec in &self.outputs {
            let value = results.get(&spec.name).ok_or_else(|| {
                BackendError::run_failed(kind, format!("no value for output `{}`", spec.name))
            })?;
            let tensor = from_ort(value).map_err(|e| {
                BackendError::run_failed(kind, format!("output `{}`: {e}", spec.name))
            })?;
            out.push((spec.name.clone(), tensor));
        }
        Ok(out)
    }

    fn provider_used(&self) -> &str {
        self.provider
    }
}

fn io_spec(name: &str, ty: &ValueType) -> IoSpec {
    match ty {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => IoSpec {
            name: name.to_string(),
            dtype: dtype_name(*ty),
            shape: shape.iter().map(|&d| usize::try_from(d).ok()).collect(),
            dim_names: (0..shape.len())
                .map(|i| dimension_symbols.get(i).filter(|s| !s.is_empty()).cloned())
                .collect(),
            ranked: true,
        },
        other => IoSpec {
            name: name.to_string(),
            dtype: other.to_string(),
            shape: Vec::new(),
            dim_names: Vec::new(),
            ranked: false,
        },
    }
}

fn dtype_name(ty: TensorElementType) -> String {
    match ty {
        TensorElementType::Float32 => "f32",
        TensorElementType::Float64 => "f64",
        TensorElementType::Float16 => "f16",
        TensorElementType::Int64 => "i64",
        TensorElementType::Int32 => "i32",
        TensorElementType::Bool => "bool",
        TensorElementType::Uint8 => "u8",
        TensorElementType::Int8 => "i8",
        TensorElementType::Uint16 => "u16",
        TensorElementType::Int16 => "i16",
        TensorElementType::Uint32 => "u32",
        TensorElementType::Uint64 => "u64",
        TensorElementType::String => "string",
        TensorElementType::Bfloat16 => "bf16",
        other => return format!("{other:?}").to_ascii_lowercase(),
    }
    .to_string()
}

pub(crate) fn to_ort(t: &HostTensor) -> Result<DynValue, OrtError> {
    let shape = t.shape.clone();
    let made = match &t.data {
        TensorData::F32(v) => Tensor::from_array((shape, v.clone())).map(Tensor::into_dyn),
        TensorData::F64(v) => Tensor::from_array((shape, v.clone())).map(Tensor::into_dyn),
        TensorData::F16(v) => Tensor::from_array((shape, v.clone())).map(Tensor::into_dyn),
        TensorData::I64(v) => Tensor::from_array((shape, v.clone())).map(Tensor::into_dyn),
        TensorData::I32(v) => Tensor::from_array((shape, v.clone())).map(Tensor::into_dyn),
        TensorData::Bool(v) => Tensor::from_array((shape, v.clone())).map(Tensor::into_dyn),
    };
    made.map_err(OrtError::runtime)
}

fn from_ort(value: &DynValue) -> Result<HostTensor, OrtError> {
    fn take<T: ::ort::value::PrimitiveTensorElementType + Copy>(
        value: &DynValue,
    ) -> Result<(Vec<usize>, Vec<T>), OrtError> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(OrtError::runtime)?;
        let shape = shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| OrtError::NegativeDim(d)))
            .collect::<Result<_, _>>()?;
        Ok((shape, data.to_vec()))
    }
    let ty = value
        .dtype()
        .tensor_type()
        .ok_or_else(|| OrtError::NotATensor(value.dtype().to_string()))?;
    let (shape, data) = match ty {
        TensorElementType::Float32 => take::<f32>(value).map(|(s, d)| (s, TensorData::F32(d)))?,
        TensorElementType::Float64 => take::<f64>(value).map(|(s, d)| (s, TensorData::F64(d)))?,
        TensorElementType::Float16 => {
            take::<half::f16>(value).map(|(s, d)| (s, TensorData::F16(d)))?
        }
        TensorElementType::Int64 => take::<i64>(value).map(|(s, d)| (s, TensorData::I64(d)))?,
        TensorElementType::Int32 => take::<i32>(value).map(|(s, d)| (s, TensorData::I32(d)))?,
        TensorElementType::Bool => take::<bool>(value).map(|(s, d)| (s, TensorData::Bool(d)))?,
        other => return Err(OrtError::Unsupported(dtype_name(other))),
    };
    Ok(HostTensor::new(shape, data)?)
}
