"""Test helpers: slow, obviously-correct reference metrics (one mask per
instance, one loop per pair, HoVer-Net definitions), random instance maps
and prediction-like perturbations."""
import numpy as np
from scipy.optimize import linear_sum_assignment


def naive_pairwise(true, pred):
    """Dense (G, P) intersection and union, ids in np.unique order."""
    t_ids = [i for i in np.unique(true) if i != 0]
    p_ids = [i for i in np.unique(pred) if i != 0]
    inter = np.zeros((len(t_ids), len(p_ids)))
    union = np.zeros((len(t_ids), len(p_ids)))
    t_masks = [true == i for i in t_ids]
    p_masks = [pred == i for i in p_ids]
    p_index = {i: b for b, i in enumerate(p_ids)}
    for a, tm in enumerate(t_masks):
        # non-overlapping pairs stay 0 (HoVer-Net skips them the same way)
        for i in np.unique(pred[tm]):
            if i == 0:
                continue
            pm = p_masks[p_index[i]]
            inter[a, p_index[i]] = np.logical_and(tm, pm).sum()
            union[a, p_index[i]] = np.logical_or(tm, pm).sum()
    t_area = np.array([m.sum() for m in t_masks], float)
    p_area = np.array([m.sum() for m in p_masks], float)
    return t_ids, p_ids, inter, union, t_area, p_area


def naive_aji(true, pred):
    _, _, inter, union, t_area, p_area = naive_pairwise(true, pred)
    g, p = inter.shape
    if g == 0 and p == 0:
        return float('nan')
    if g == 0 or p == 0:
        return 0.0
    iou = inter / (union + 1e-6)
    best = iou.argmax(axis=1)
    paired = iou.max(axis=1) > 0
    tot_i = tot_u = 0.0
    used = set()
    for t in range(g):
        if paired[t]:
            tot_i += inter[t, best[t]]
            tot_u += union[t, best[t]]
            used.add(best[t])
        else:
            tot_u += t_area[t]
    for q in range(p):
        if q not in used:
            tot_u += p_area[q]
    return tot_i / tot_u


def naive_aji_plus(true, pred):
    _, _, inter, union, t_area, p_area = naive_pairwise(true, pred)
    g, p = inter.shape
    if g == 0 and p == 0:
        return float('nan')
    if g == 0 or p == 0:
        return 0.0
    iou = inter / (union + 1e-6)
    rows, cols = linear_sum_assignment(-iou)
    keep = iou[rows, cols] > 0
    rows, cols = rows[keep], cols[keep]
    tot_i = inter[rows, cols].sum()
    tot_u = union[rows, cols].sum()
    tot_u += sum(t_area[t] for t in range(g) if t not in set(rows))
    tot_u += sum(p_area[q] for q in range(p) if q not in set(cols))
    return tot_i / tot_u


def naive_pq(true, pred, match_iou=0.5):
    """Returns (dq, sq, pq, tp, fp, fn)."""
    _, _, inter, union, _, _ = naive_pairwise(true, pred)
    g, p = inter.shape
    if g == 0 and p == 0:
        return (float('nan'), ) * 3 + (0, 0, 0)
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    if match_iou >= 0.5:
        rows, cols = np.nonzero(iou > match_iou)
    else:
        rows, cols = linear_sum_assignment(-iou)
        keep = iou[rows, cols] > match_iou
        rows, cols = rows[keep], cols[keep]
    tp = len(rows)
    fp, fn = p - tp, g - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = iou[rows, cols].sum() / tp if tp else 0.0
    return dq, sq, dq * sq, tp, fp, fn


def random_instance_map(rng, size=64, n=12, rmin=3, rmax=9):
    """Overlapping random discs painted in order (later overwrite)."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((size, size), np.int32)
    for i in range(1, n + 1):
        cy, cx = rng.integers(0, size, 2)
        ry, rx = rng.integers(rmin, rmax, 2)
        out[((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 <= 1] = i
    return out


def erode_instances(inst):
    """Remove the 1-px border of every instance (4-neighbourhood)."""
    out = inst.copy()
    pad = np.pad(inst, 1, mode='edge')
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        nb = pad[dy:dy + inst.shape[0], dx:dx + inst.shape[1]]
        out[nb != inst] = 0
    return out


def perturb(inst, rng, kind):
    """A plausible imperfect prediction derived from a GT map."""
    ids = np.unique(inst)
    ids = ids[ids > 0]
    if kind == 'shift':
        return np.roll(inst, (int(rng.integers(-3, 4)),
                              int(rng.integers(-3, 4))), axis=(0, 1))
    if kind == 'erode':
        return erode_instances(inst)
    if kind == 'drop':
        out = inst.copy()
        out[np.isin(out, rng.choice(ids, max(1, len(ids) // 4),
                                    replace=False))] = 0
        return out
    if kind == 'merge':
        out = inst.copy()
        for a, b in rng.choice(ids, (max(1, len(ids) // 6), 2)):
            out[out == b] = a
        return out
    if kind == 'relabel':
        # non-contiguous, permuted ids (uint16 too)
        lut = np.zeros(inst.max() + 1, np.int64)
        lut[ids] = rng.permutation(len(ids)) * 7 + 1000
        return lut[inst].astype(np.uint16)
    if kind == 'mixed':
        return perturb(perturb(erode_instances(inst), rng, 'shift'), rng,
                       'merge')
    raise ValueError(kind)


PERTURBATIONS = ('shift', 'erode', 'drop', 'merge', 'relabel', 'mixed')
