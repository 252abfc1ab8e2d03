//! Optimizers that update parameters held in Rust buffers.
//!
//! The training graph only computes the loss and gradients; keeping the
//! update in Rust means the graph stays plain inference (any runtime runs
//! it) and the optimizer state never has to round-trip through ONNX. The
//! update rules follow PyTorch's `SGD` and `AdamW` so a pa-onnx run and a
//! PyTorch run with the same hyper-parameters take the same steps.

/// Updates parameters in place from their gradients.
pub trait Optimizer: Send {
    /// One update; `params[i]` and `grads[i]` have the same length.
    fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]);
    /// The learning rate, for schedules.
    fn set_lr(&mut self, lr: f32);
}

/// Stochastic gradient descent with momentum and L2 weight decay (coupled,
/// as in PyTorch: the decay is added to the gradient before the momentum).
#[derive(Clone, Debug)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 for plain SGD).
    pub momentum: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    velocity: Vec<Vec<f32>>,
}

impl Sgd {
    /// An optimizer with these hyper-parameters and no momentum yet.
    pub fn new(lr: f32, momentum: f32, weight_decay: f32) -> Self {
        Sgd {
            lr,
            momentum,
            weight_decay,
            velocity: vec![],
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) {
        if self.velocity.is_empty() {
            // PyTorch starts the buffer at the first gradient, i.e. from zero.
            self.velocity = params.iter().map(|p| vec![0.0; p.len()]).collect();
        }
        for ((p, g), v) in params.iter_mut().zip(grads).zip(&mut self.velocity) {
            for ((p, &g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
                let g = g + self.weight_decay * *p;
                *v = self.momentum * *v + g;
                *p -= self.lr * *v;
            }
        }
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
}

/// Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's `AdamW`.
#[derive(Clone, Debug)]
pub struct AdamW {
    /// Learning rate.
    pub lr: f32,
    /// Decay rate of the first-moment estimate.
    pub beta1: f32,
    /// Decay rate of the second-moment estimate.
    pub beta2: f32,
    /// Added to the denominator for numerical stability.
    pub eps: f32,
    /// Decoupled weight decay, scaled by the learning rate.
    pub weight_decay: f32,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
}

impl AdamW {
    /// PyTorch's defaults (betas 0.9, 0.999, eps 1e-8) with this learning
    /// rate and weight decay.
    pub fn new(lr: f32, weight_decay: f32) -> Self {
        AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            m: vec![],
            v: vec![],
            t: 0,
        }
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>]) {
        if self.m.is_empty() {
            self.m = params.iter().map(|p| vec![0.0; p.len()]).collect();
            self.v = self.m.clone();
        }
        self.t += 1;
        let c1 = 1.0 - self.beta1.powi(self.t);
        let c2 = 1.0 - self.beta2.powi(self.t);
        let decay = 1.0 - self.lr * self.weight_decay;
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *p *= decay;
                *m = self.beta1 * *m + (1.0 - self.beta1) * g;
                *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
                let denom = (*v / c2).sqrt() + self.eps;
                *p -= self.lr * (*m / c1) / denom;
            }
        }
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed steps of PyTorch's update rules.
    #[test]
    fn sgd_momentum_matches_hand_computation() {
        let mut opt = Sgd::new(0.1, 0.9, 0.01);
        let mut p = vec![vec![1.0f32]];
        opt.step(&mut p, &[vec![0.5]]);
        // g = 0.5 + 0.01 = 0.51; v = 0.51; p = 1 - 0.051
        assert!((p[0][0] - 0.949).abs() < 1e-6);
        opt.step(&mut p, &[vec![0.5]]);
        // g = 0.5 + 0.00949; v = 0.9 * 0.51 + 0.50949 = 0.96849
        assert!((p[0][0] - (0.949 - 0.096849)).abs() < 1e-6);
    }

    #[test]
    fn adamw_first_step_is_lr_times_sign() {
        let mut opt = AdamW::new(0.01, 0.1);
        let mut p = vec![vec![2.0f32, -1.0]];
        opt.step(&mut p, &[vec![3.0, -0.25]]);
        // Bias correction makes the first step lr * g/|g|, after decay.
        assert!((p[0][0] - (2.0 * (1.0 - 0.001) - 0.01)).abs() < 1e-5);
        assert!((p[0][1] - (-(1.0 - 0.001) + 0.01)).abs() < 1e-5);
    }
}
