"""Independent float64 NumPy references of the textbook formulas.

Written from the papers' equations, not from the package's code: probabilities
come from float64 softplus / leave-one-out log-sum-exp so that `1 - p` keeps its
precision at large logits (a plain `1 - p` in float64 loses it past |x| ~ 30).
"""

import numpy as np
from scipy.special import logsumexp


def sigmoid_logs(x):
    x = np.asarray(x, np.float64)
    return -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)  # log p, log(1 - p)


def softmax_logs(x, axis=-1):
    """log p_i and log(1 - p_i) with p_i = sigmoid(x_i - logsumexp_{k != i} x_k).

    Both are -softplus(+-d_i), accurate in float64 even where p_i rounds to 0
    or 1 (x_i - logsumexp(x) would cancel there).
    """
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    num_classes = x.shape[-1]
    others = np.stack(
        [logsumexp(np.delete(x, i, axis=-1), axis=-1) for i in range(num_classes)], -1
    )
    d = x - others
    log_p, log_q = -np.logaddexp(0.0, -d), -np.logaddexp(0.0, d)
    return np.moveaxis(log_p, -1, axis), np.moveaxis(log_q, -1, axis)


def probability_logs(p, eps=1e-7):
    """Logs of probabilities clipped as Keras clips them: to float32 [eps, 1 - eps]."""
    low, high = np.float32(eps), np.float32(1.0) - np.float32(eps)
    p = np.clip(np.asarray(p, np.float32), low, high).astype(np.float64)
    return np.log(p), np.log1p(-p)


def binary_focal(y, log_p, log_q, gamma, alpha, epsilon):
    """Lin et al.'s sigmoid focal loss / the stability paper's Eq. (11), mean over last axis."""
    y = np.asarray(y, np.float64)
    p, q = np.exp(log_p), np.exp(log_q)
    ce = -(y * log_p + (1 - y) * log_q)
    one_minus_pt = y * q + (1 - y) * p
    loss = ce * (one_minus_pt + epsilon) ** gamma
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss.mean(-1)


def categorical_focal(y, log_p, log_q, gamma, alpha, epsilon):
    """-sum_i alpha_i y_i (1 - p_i + eps)^gamma log p_i (ADFL paper Eq. 6)."""
    q = np.exp(log_q)
    terms = -np.asarray(y, np.float64) * (q + epsilon) ** gamma * log_p
    if alpha is not None:
        terms = terms * np.asarray(alpha, np.float64)
    return terms.sum(-1)


def dual_focal(y, log_p, log_q, alpha=1.0, beta=1.0, gamma=1.0):
    """sum_i -[y log p + beta (1 - y) log(1 - p)] + alpha |y - p|^gamma."""
    y = np.asarray(y, np.float64)
    p, q = np.exp(log_p), np.exp(log_q)
    difference = np.abs(y * q - (1 - y) * p)
    terms = -(y * log_p + beta * (1 - y) * log_q) + alpha * difference**gamma
    return terms.sum(-1)


def dual_focal_eq7(y, p):
    """The ADFL paper's Eq. (7) as printed for hard labels (summed over classes)."""
    d = np.abs(np.asarray(y, np.float64) - np.asarray(p, np.float64))
    return (d - np.log(1 - d)).sum(-1)


def weighted_cross_entropy(y, log_p, weights=None):
    terms = -np.asarray(y, np.float64) * log_p
    if weights is not None:
        terms = terms * np.asarray(weights, np.float64)
    return terms.sum(-1)


def binary_focal_logit_gradient(y, x, gamma, alpha, epsilon):
    """dL/dx from the stability paper's Eqs. (4)/(5) and (12)/(13) times dp/dx = p(1-p).

    y = 1: alpha_t (gamma (1-p+eps)^(gamma-1) log p - (1-p+eps)^gamma / p) * p (1-p)
    y = 0: -(1-alpha_t) (gamma (p+eps)^(gamma-1) log(1-p) - (p+eps)^gamma / (1-p)) * p (1-p)

    The powers are multiplied out in log space, (1-p+eps)^(gamma-1) * (1-p) =
    exp((gamma-1) log(1-p+eps) + log(1-p)), so that the product stays finite
    where it is finite (at eps = 0 and p -> 1 the paper's factors are 0 * inf).
    """
    log_p, log_q = sigmoid_logs(x)
    p = np.exp(log_p)
    q = np.exp(log_q)
    a = 1.0 if alpha is None else alpha
    b = 1.0 if alpha is None else 1 - alpha
    with np.errstate(divide="ignore"):
        log_eps = np.log(epsilon)
    log_q_eps = np.logaddexp(log_q, log_eps)
    log_p_eps = np.logaddexp(log_p, log_eps)
    fg = a * (
        gamma * np.exp((gamma - 1) * log_q_eps + log_q) * p * log_p
        - np.exp(gamma * log_q_eps) * q
    )
    bg = -b * (
        gamma * np.exp((gamma - 1) * log_p_eps + log_p) * q * log_q
        - np.exp(gamma * log_p_eps) * p
    )
    return np.where(np.asarray(y) == 1, fg, bg)


def softmax(logits):
    x = np.asarray(logits, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def region_loss(labels, logits, alpha=None, beta=None, batch=False, include_background=True,
                smooth=1e-5, ignore_class=None):
    """Float64 Dice (alpha = beta = None) or Tversky loss per image (or the batch's value), written from the formulas."""
    num_classes = np.shape(logits)[-1]
    p = softmax(logits)
    valid = np.ones(labels.shape, bool) if ignore_class is None else labels != ignore_class
    g = np.eye(num_classes)[np.where(valid, labels, 0)] * valid[..., None]
    p = p * valid[..., None]
    axes = tuple(range(0 if batch else 1, labels.ndim))
    tp, fp, fn = (p * g).sum(axes), (p * (1 - g)).sum(axes), ((1 - p) * g).sum(axes)
    if alpha is None:
        per_class = 1 - (2 * tp + smooth) / (2 * tp + fp + fn + smooth)  # sum p + sum g = 2 TP + FP + FN
    else:
        per_class = 1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
    if not include_background:
        per_class = per_class[..., 1:]
    return per_class.mean(-1)
