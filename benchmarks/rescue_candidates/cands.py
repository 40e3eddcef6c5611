"""Dead-gradient remedies for AnyLoss, plain torch (experiment for issue 18 item 1).

Approximation A(p) = sigmoid(L (p - 1/2)), p = sigmoid(z) (from_logits) or p = the input (probabilities).
Each candidate returns (yhat, extra_loss); counts from yhat; loss = 1 - M(counts) + extra_loss.
"""
import torch
import torch.nn.functional as F

L = 73.0


def approx(s, logits=True, scale=L):
    p = torch.sigmoid(s) if logits else s
    return torch.sigmoid(scale * (p - 0.5))


def wrong_side(s, y, logits=True):
    c = 0.0 if logits else 0.5  # decision boundary of the input
    return ((y > 0.5) & (s < c)) | ((y < 0.5) & (s > c))


def yhat_and_extra(s, y, kind="plain", eps=0.0, logits=True, scale=L):
    """s: logits z (logits=True) or probabilities p; y: 0/1 float."""
    a = approx(s, logits, scale)
    extra = s.new_zeros(())
    delta = s - s.detach()  # value 0, d/ds = 1
    if kind == "plain" or kind == "warmup":
        yhat = a
    elif kind == "leak":  # + eps to dyhat/ds on the wrong side only
        yhat = a + eps * wrong_side(s, y, logits).to(s.dtype) * delta
    elif kind == "leak_all":  # + eps to dyhat/ds everywhere
        yhat = a + eps * delta
    elif kind == "floor":  # dyhat/ds = max(true, eps) on the wrong side only
        with torch.no_grad():
            if logits:
                p = torch.sigmoid(s)
                d = scale * a * (1 - a) * p * (1 - p)
            else:
                d = scale * a * (1 - a)
            add = torch.clamp(eps - d, min=0.0) * wrong_side(s, y, logits).to(s.dtype)
        yhat = a + add * delta
    elif kind == "bce_wrong":  # BCE on the wrong-side samples only (sum / n)
        yhat = a
        w = wrong_side(s, y, logits).to(s.dtype)
        b = F.binary_cross_entropy_with_logits(s, y, reduction="none") if logits else F.binary_cross_entropy(s, y, reduction="none")
        extra = eps * (w * b).mean()
    elif kind == "bce_exact":  # BCE's gradient, value exactly AnyLoss's (lam * (BCE - BCE.detach()))
        yhat = a
        b = F.binary_cross_entropy_with_logits(s, y) if logits else F.binary_cross_entropy(s, y)
        extra = eps * (b - b.detach())
    elif kind == "bce":
        yhat = a
        if logits:
            extra = eps * F.binary_cross_entropy_with_logits(s, y)
        else:
            extra = eps * F.binary_cross_entropy(s, y)
    else:
        raise ValueError(kind)
    return yhat, extra


def metric_loss(yhat, y, metric="f1"):
    tp = (y * yhat).sum(); fn = (y * (1 - yhat)).sum()
    fp = ((1 - y) * yhat).sum(); tn = ((1 - y) * (1 - yhat)).sum()
    if metric == "f1":
        return 1 - 2 * tp / (2 * tp + fp + fn)
    tpr, tnr = tp / (tp + fn), tn / (tn + fp)
    if metric == "gmean":
        return 1 - torch.sqrt(tpr * tnr + 1e-12)  # 1e-12: sqrt'(0) is inf
    if metric == "gmean_lib":  # anyloss_core's form: sqrt of the argument clipped at 2**-126 (zero grad below)
        return 1 - torch.sqrt(torch.clamp(tpr * tnr, min=2.0 ** -126))
    if metric == "bacc":
        return 1 - (tpr + tnr) / 2
    raise ValueError(metric)


def loss(s, y, cand, metric="f1", logits=True, scale=L):
    kind, eps = cand
    if kind == "bce_only":
        return F.binary_cross_entropy_with_logits(s, y) if logits else F.binary_cross_entropy(s, y)
    yhat, extra = yhat_and_extra(s, y, kind, eps, logits, scale)
    return metric_loss(yhat, y, metric) + extra


CANDS = {
    "bce(baseline)": ("bce_only", 0),
    "a plain": ("plain", 0),
    "b leak 1e-3": ("leak", 1e-3), "b leak 1e-2": ("leak", 1e-2), "b leak 1e-1": ("leak", 1e-1),
    "b2 floor 1e-3": ("floor", 1e-3), "b2 floor 1e-2": ("floor", 1e-2), "b2 floor 1e-1": ("floor", 1e-1),
    "c bce 0.01": ("bce", 0.01), "c bce 0.1": ("bce", 0.1),
    "d leak_all 1e-2": ("leak_all", 1e-2),
    "d warmup L 1->73": ("warmup", 0),
}


def f1(yt, pred):
    tp = float((yt * pred).sum()); fp = float(((1 - yt) * pred).sum()); fn = float((yt * (1 - pred)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def gmean(yt, pred):
    tp = float((yt * pred).sum()); fn = float((yt * (1 - pred)).sum())
    tn = float(((1 - yt) * (1 - pred)).sum()); fp = float(((1 - yt) * pred).sum())
    return ((tp / max(tp + fn, 1)) * (tn / max(tn + fp, 1))) ** 0.5


def bacc(yt, pred):
    tp = float((yt * pred).sum()); fn = float((yt * (1 - pred)).sum())
    tn = float(((1 - yt) * (1 - pred)).sum()); fp = float(((1 - yt) * pred).sum())
    return 0.5 * (tp / max(tp + fn, 1) + tn / max(tn + fp, 1))


SCORE = {"f1": f1, "gmean": gmean, "gmean_lib": gmean, "bacc": bacc}

EXTRA = {
    "a plain": ("plain", 0),
    "b leak 3e-1": ("leak", 0.3), "b leak 1": ("leak", 1.0),
    "b2 floor 3e-1": ("floor", 0.3),
    "c bce 0.01": ("bce", 0.01), "c' bce_exact 0.01": ("bce_exact", 0.01),
    "d bce_wrong 0.01": ("bce_wrong", 0.01), "d bce_wrong 0.1": ("bce_wrong", 0.1),
}
