//! One backend's verdict: load both models, feed them the same inputs, and
//! check what comes out.
//!
//! The order of the checks decides what a problem means: the original
//! failing to load or run says the backend cannot handle this model (a
//! skip), while the candidate failing where the original succeeds says the
//! rewiring broke something (a failure). Every failed check is collected,
//! not only the first, so one report lists all that is wrong.

use std::collections::HashSet;
use std::path::Path;

use super::inputs::make_inputs;
use super::options::InferenceOptions;
use super::probe::ProbeModels;
use super::report::{BackendReport, InferenceReport, OutputReport, ProbeReport};
use super::tolerance::compare;
use crate::backend::{
    self, BackendError, BackendKind, BackendOptions, HostTensor, IoSpec, Session,
};
use crate::stats::std_dev;

/// Outputs of both models on the reference backend.
pub(super) struct Reference {
    pub(super) kind: BackendKind,
    pub(super) original: Outputs,
    pub(super) candidate: Outputs,
}

/// Named tensors, in the model's order of inputs or outputs.
pub(super) type Outputs = Vec<(String, HostTensor)>;

/// The files one backend loads.
pub(super) struct Models<'a> {
    /// The original as the user gave it.
    pub(super) original: &'a Path,
    /// The candidate as the user gave it.
    pub(super) candidate: &'a Path,
    /// Copies of both with the rewired layers' outputs exposed, when they
    /// could be made.
    pub(super) probe: Option<&'a ProbeModels>,
}

/// One backend: load, run, check. Returns the outputs when both models ran.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_backend(
    kind: BackendKind,
    required: bool,
    models: &Models<'_>,
    opts: &InferenceOptions,
    backend_opts: &BackendOptions,
    user_inputs: Option<&[(String, HostTensor)]>,
    feed: &mut Option<Outputs>,
    report: &mut InferenceReport,
    reference: Option<&Reference>,
) -> (BackendReport, Option<(Outputs, Outputs)>) {
    let br = BackendReport::new(kind, required);
    let (mut orig_session, probe, probe_note) = match open_original(kind, models, backend_opts) {
        Ok(opened) => opened,
        Err(e @ BackendError::Unavailable { .. }) => {
            return (br.skip(e.reason().to_string()), None)
        }
        Err(e) => {
            return (
                br.skip(format!("cannot load the original: {}", e.reason())),
                None,
            )
        }
    };
    let candidate = probe.map_or(models.candidate, |p| p.candidate.as_path());
    let mut cand_session = match backend::open(kind, candidate, backend_opts) {
        Ok(s) => s,
        Err(e @ BackendError::Unavailable { .. }) => {
            return (br.skip(e.reason().to_string()), None)
        }
        Err(e) => {
            return (
                br.fail(format!(
                    "the candidate does not load although the original does: {}",
                    e.reason()
                )),
                None,
            )
        }
    };
    let mut br = br;
    br.notes.extend(probe_note);
    br.provider_used = Some(orig_session.provider_used().to_string());

    if let Some(diff) = io_difference("input", orig_session.inputs(), cand_session.inputs()) {
        return (br.fail(diff), None);
    }

    if feed.is_none() {
        match make_inputs(
            orig_session.inputs(),
            user_inputs,
            &backend_opts.input_shapes,
            opts.seed,
        ) {
            Ok((inputs, summaries)) => {
                report.inputs = summaries;
                *feed = Some(inputs);
            }
            Err(e) => {
                report.error = Some(e.to_string());
                return (br, None);
            }
        }
    }
    let inputs = feed.as_deref().unwrap_or_default();

    let orig_out = match run(&mut *orig_session, inputs) {
        Ok(o) => o,
        Err(e) => {
            return (
                br.skip(format!("cannot run the original: {}", e.reason())),
                None,
            )
        }
    };
    let cand_out = match run(&mut *cand_session, inputs) {
        Ok(o) => o,
        Err(e) => {
            return (
                br.fail(format!(
                    "the candidate fails to run although the original runs: {}",
                    e.reason()
                )),
                None,
            )
        }
    };

    // Outputs the probe copies added are compared as layers, not as outputs.
    let probes = probe.map_or(&[][..], |p| p.probes.as_slice());
    let added: HashSet<&str> = probes
        .iter()
        .filter(|p| p.added)
        .map(|p| p.output.as_str())
        .collect();
    let mut model_outputs = 0;
    for (ix, (name, o)) in orig_out.iter().enumerate() {
        if added.contains(name.as_str()) {
            continue;
        }
        model_outputs += 1;
        let Some((_, c)) = cand_out.iter().find(|(n, _)| n == name) else {
            br.failures
                .push(format!("output `{name}` is missing from the candidate"));
            continue;
        };
        if ix < cand_out.len() && &cand_out[ix].0 != name {
            br.failures.push(format!(
                "output `{name}` moved to another position in the candidate"
            ));
        }
        let pair = Pair {
            kind,
            name,
            original: o,
            candidate: c,
            what: "output",
        };
        if let Some(out) = pair.compare(opts, reference, &mut br.failures) {
            br.outputs.push(out);
        }
    }
    for (name, _) in &cand_out {
        if !added.contains(name.as_str()) && !orig_out.iter().any(|(n, _)| n == name) {
            br.failures
                .push(format!("the candidate has an extra output `{name}`"));
        }
    }
    for p in probes {
        let (Some(o), Some(c)) = (find(&orig_out, &p.output), find(&cand_out, &p.output)) else {
            br.failures.push(format!(
                "layer output `{}` of `{}` did not come back from both models",
                p.output, p.node
            ));
            continue;
        };
        let pair = Pair {
            kind,
            name: &p.output,
            original: o,
            candidate: c,
            what: "layer output",
        };
        if let Some(output) = pair.compare(opts, reference, &mut br.failures) {
            br.probes.push(ProbeReport {
                node: p.node.clone(),
                op: p.op.clone(),
                weights: p.weights.clone(),
                output,
            });
        }
    }
    effect(&mut br, model_outputs, opts.expect_change);
    (br.finish(), Some((orig_out, cand_out)))
}

/// The effect check: the rewiring must show in the outputs or, where the
/// outputs are blind to the weights at initialisation, in the outputs of
/// the rewired layers.
fn effect(br: &mut BackendReport, model_outputs: usize, expect_change: bool) {
    let outputs_changed = br.outputs.iter().any(|o| o.changed);
    let layers = br.probes.len();
    let layers_changed = br.probes.iter().filter(|p| p.output.changed).count();
    if outputs_changed || model_outputs == 0 {
        return;
    }
    if layers_changed > 0 {
        br.notes.push(format!(
            "final outputs unchanged (blind at initialisation: zero-initialised head or vanishing \
             activations); {layers_changed} of the {layers} rewired layers' outputs changed"
        ));
    } else if expect_change && layers == 0 {
        br.failures.push(
            "no output of the candidate differs from the original beyond tolerance: the rewiring changed nothing \
             that the outputs can see"
                .to_string(),
        );
    } else if expect_change {
        br.failures.push(format!(
            "neither the outputs nor any of the {layers} rewired layers' outputs differ from the original \
             beyond tolerance: the rewiring changed nothing"
        ));
    }
}

/// Opens the original's probe copy, or the original itself when there is
/// none or the backend refuses it (then with a note saying so).
#[allow(clippy::type_complexity)]
fn open_original<'a>(
    kind: BackendKind,
    models: &Models<'a>,
    opts: &BackendOptions,
) -> Result<(Box<dyn Session>, Option<&'a ProbeModels>, Option<String>), BackendError> {
    let mut note = None;
    if let Some(p) = models.probe {
        match backend::open(kind, &p.original, opts) {
            Ok(s) => return Ok((s, Some(p), None)),
            Err(e @ BackendError::Unavailable { .. }) => return Err(e),
            Err(e) => {
                note = Some(format!(
                    "the rewired layers cannot be probed on this backend ({}); only the model's outputs are compared",
                    e.reason()
                ))
            }
        }
    }
    backend::open(kind, models.original, opts).map(|s| (s, None, note))
}

/// One tensor of both models on one backend.
struct Pair<'a> {
    kind: BackendKind,
    name: &'a str,
    original: &'a HostTensor,
    candidate: &'a HostTensor,
    /// How messages call it: `output` or `layer output`.
    what: &'a str,
}

impl Pair<'_> {
    /// Compares candidate with original, and the candidate with the
    /// reference backend's; every failed check goes to `failures`. None
    /// when the two do not even have the same shape and type.
    fn compare(
        &self,
        opts: &InferenceOptions,
        reference: Option<&Reference>,
        failures: &mut Vec<String>,
    ) -> Option<OutputReport> {
        let Pair {
            kind,
            name,
            original: o,
            candidate: c,
            what,
        } = *self;
        if o.shape != c.shape || o.dtype() != c.dtype() {
            failures.push(format!(
                "{what} `{name}`: original is {} {:?}, candidate is {} {:?}",
                o.dtype(),
                o.shape,
                c.dtype(),
                c.shape
            ));
            return None;
        }
        let (atol, rtol) = opts.tolerance(name);
        let ov = o.to_f64();
        let cv = c.to_f64();
        let bad_orig = ov.iter().filter(|x| !x.is_finite()).count();
        let bad_cand = cv.iter().filter(|x| !x.is_finite()).count();
        if bad_cand > 0 {
            failures.push(format!(
                "{what} `{name}`: {bad_cand} non-finite values in the candidate"
            ));
        }
        if bad_orig > 0 {
            failures.push(format!(
                "{what} `{name}`: the original itself gives {bad_orig} non-finite values, so the comparison means nothing"
            ));
        }
        let diff = compare(&cv, &ov, atol, rtol);
        let mut out = OutputReport {
            name: name.to_string(),
            shape: c.shape.clone(),
            dtype: c.dtype().to_string(),
            max_abs_err: None,
            max_rel_err: None,
            original_max_abs_err: None,
            // Non-finite values are reported above; the spread is of the rest.
            std_original: std_dev(&finite(&ov)),
            std_candidate: std_dev(&finite(&cv)),
            max_abs_change: diff.max_abs,
            changed: diff.violations > 0,
            atol,
            rtol,
        };
        let Some(reference) = reference else {
            return Some(out);
        };
        match find(&reference.candidate, name) {
            None => failures.push(format!(
                "{what} `{name}` is missing on the reference {}",
                reference.kind
            )),
            Some(r) if r.shape != c.shape || r.dtype() != c.dtype() => failures.push(format!(
                "{what} `{name}`: {} gives {} {:?}, the reference {} gives {} {:?}",
                kind,
                c.dtype(),
                c.shape,
                reference.kind,
                r.dtype(),
                r.shape
            )),
            Some(r) => {
                let d = compare(&cv, &r.to_f64(), atol, rtol);
                out.max_abs_err = Some(d.max_abs);
                out.max_rel_err = Some(d.max_rel);
                if d.violations > 0 {
                    failures.push(format!(
                        "{what} `{name}`: {kind} disagrees with {} on the candidate at {} of {} values \
                         (max abs err {:.3e}, max rel err {:.3e}; tolerance {atol:e} + {rtol:e}*|ref|)",
                        reference.kind,
                        d.violations,
                        cv.len(),
                        d.max_abs,
                        d.max_rel
                    ));
                }
                if let Some(ro) = find(&reference.original, name).filter(|ro| ro.shape == o.shape) {
                    out.original_max_abs_err = Some(compare(&ov, &ro.to_f64(), atol, rtol).max_abs);
                }
            }
        }
        Some(out)
    }
}

fn run(
    session: &mut dyn Session,
    inputs: &[(String, HostTensor)],
) -> Result<Outputs, BackendError> {
    session.run(inputs)
}

/// Describes how two models' inputs differ, if they do.
fn io_difference(what: &str, a: &[IoSpec], b: &[IoSpec]) -> Option<String> {
    let describe = |specs: &[IoSpec]| {
        specs
            .iter()
            .map(|s| format!("{} {} {}", s.name, s.dtype, backend::format_spec_shape(s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.name == y.name && x.dtype == y.dtype && x.shape == y.shape);
    (!same).then(|| {
        format!(
            "the candidate's {what}s differ from the original's: ({}) vs ({})",
            describe(a),
            describe(b)
        )
    })
}

/// The tensor named `name`, if `outs` has it.
fn find<'a>(outs: &'a Outputs, name: &str) -> Option<&'a HostTensor> {
    outs.iter().find(|(n, _)| n == name).map(|(_, t)| t)
}

/// The finite values of `v`.
fn finite(v: &[f64]) -> Vec<f64> {
    v.iter().copied().filter(|x| x.is_finite()).collect()
}
