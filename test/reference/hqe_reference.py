#!/usr/bin/env python3
"""Independent float64 reference implementation of the HQE resonance model.

Written from docs/model.md (sections 1-6 and 9, cited below as "MODEL §n") and
docs/engine.md (cited as "engine.md") alone, without looking at the TypeScript engine.
Standard library only.

Usage:
    python3 hqe_reference.py < normalized_config.json   # prints one JSON result object
    python3 hqe_reference.py --selftest                 # checks the pcg4d test vectors (exit 0/1)

Input: one normalized HQE config (every field present; a few defaults are filled in
anyway for convenience, see DEFAULTS). Output:
    {"status", "step", "restart", "finalMetrics", "records": [...]}
with records exactly per engine.md's table. Non-finite numbers are printed as null.

Choices where the documents leave room (also listed in README.md):
  * Metrics are clipped to [0,1] as soon as they are computed (after the finiteness check on
    the raw values) and the clipped values feed everything downstream: the plateau counter
    (entropy), the controlled resonance R_n (operator R -> clipped r, R_q -> clipped C).
  * operator "custom": R = |sum w P e^{i theta}| / sum w P, 0 when the denominator < 1e-30;
    weights missing -> all 1. Not clipped (it lies in [0,1] for w >= 0).
  * No resonanceTarget: R_n is still computed (as resonanceStrength, the default operator R)
    and reported in records; it drives nothing.
  * kl_to_prior with a prior entry pi_i = 0 and P_i > 0: KL = +inf, entropy = max(0, -inf) = 0.
    Terms with P_i = 0 contribute 0 (0 ln 0 = 0), likewise in the Shannon entropy.
  * PLATEAU flag only when the plateau branch of the decision is taken (a state that converges
    or fails with c >= plateauT carries plateauDetected=true but not the PLATEAU flag).
  * A failed record prints the non-finite metric(s) as null (and any non-finite phase,
    amplitude, gamma, lnNu or R as null).
  * metricsInterval / snapshotsInterval <= 0 never flag (no modulo by zero).
  * Mixer flow is literally K_ij = 1 (i != j): localityBias and the semantic kernel do not apply.
  * The kl_to_prior prior is the run's initial mass; restarts do not change it.
  * Initial masses are normalised once (P = w / sum w); projectorSweeps only act in step 5.
    The amplitudes are scaled by max|A| before squaring (MODEL §9), so 1e200 or 1e-200 run.
  * Failure (MODEL §9): a state fails when a metric is not finite, when lnNu is NaN or e^lnNu
    overflows float64 (the reported amplitudes; lnNu = -inf is a zero norm, not a failure), or when
    the update is about to be applied and a phase increment of that step is not finite or exceeds
    2^20 rad (the state the step starts from is the failed one; a state that ends or restarts
    applies no step).
"""

import json
import math
import sys

TWO_PI = 2.0 * math.pi
MASK32 = 0xFFFFFFFF

# Flags, engine.md "Records"
METRICS = 1
SNAPSHOT = 2
TERMINAL = 4
PLATEAU = 8
CONVERGED = 16
FAILED = 32
RESTART = 64

MAX_PHASE_STEP = 2.0 ** 20  # MODEL §9: a larger phase increment fails the step
LN_MAX = math.log(sys.float_info.max)  # e^lnNu overflows float64 above this

METRIC_KEYS = ("resonanceStrength", "coherence", "entropy", "locality", "dominance")

# ---------------------------------------------------------------------------------------------
# Noise: pcg4d and U (MODEL §4, "Noise")
# ---------------------------------------------------------------------------------------------


def pcg4d(x, y, z, w):
    """pcg4d on four u32, all arithmetic mod 2^32; updates within a line are sequential."""
    x = (x * 1664525 + 1013904223) & MASK32
    y = (y * 1664525 + 1013904223) & MASK32
    z = (z * 1664525 + 1013904223) & MASK32
    w = (w * 1664525 + 1013904223) & MASK32
    x = (x + y * w) & MASK32
    y = (y + z * x) & MASK32
    z = (z + x * y) & MASK32
    w = (w + y * z) & MASK32
    x ^= x >> 16
    y ^= y >> 16
    z ^= z >> 16
    w ^= w >> 16
    x = (x + y * w) & MASK32
    y = (y + z * x) & MASK32
    z = (z + x * y) & MASK32
    w = (w + y * z) & MASK32
    return x, y, z, w


def uniform(seed, rho, n, i):
    """U(seed, rho, n, i) = ((pcg4d(...).x >> 8) + 0.5) * 2^-24, in (0,1)."""
    x = pcg4d(seed & MASK32, rho & MASK32, n & MASK32, i & MASK32)[0]
    return ((x >> 8) + 0.5) * (2.0 ** -24)


def xi(seed, rho, n, i):
    """Unit-variance noise xi = 1.7320508 * (2U - 1) (the literal constant of MODEL §4)."""
    return 1.7320508 * (2.0 * uniform(seed, rho, n, i) - 1.0)


SELFTEST_VECTORS = [
    ((0, 0, 0, 0), (0x0F02F829, 0x2D568769, 0x32B0C43B, 0xD32548EA), 0.058639079332351685),
    ((42, 0, 7, 3), (0xF5869AE5, 0x060A962B, 0x4C869276, 0xD70D1840), 0.9590851366519928),
    ((4294967295, 1, 100, 2047), (0x2204D036, 0x61D156FC, 0x3E19F4EB, 0x90A2C79F), 0.13288596272468567),
]


def selftest():
    ok = True
    for args, want, want_u in SELFTEST_VECTORS:
        got = pcg4d(*args)
        u = uniform(*args)
        good = got == want and u == want_u
        ok = ok and good
        print("%s pcg4d%s -> %s U=%r" % ("ok  " if good else "FAIL", args,
                                        " ".join("0x%08x" % v for v in got), u))
    return ok


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def wrap_2pi(x):
    """Wrap to [0, 2pi)."""
    r = x % TWO_PI  # Python float % with a positive modulus is in [0, 2pi] ...
    if r >= TWO_PI:  # ... and can round up to exactly 2pi for tiny negative x
        r = 0.0
    return r


def clip01(x):
    return 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def safe_exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


# ---------------------------------------------------------------------------------------------
# Config (normalized; defaults filled only as a convenience, from the HQE API contract + docs/model.md)
# ---------------------------------------------------------------------------------------------

DEFAULTS = {
    "phaseSeeding": {"golden": False, "silver": False},
    "mixer": {"type": "local", "gamma0": 0.2, "gammaGrowth": 0.001, "temperature0": 1.0,
              "beta": 0.98, "localityBias": 0.3, "learningRate": 0.05},
    "entropy": {"base": "shannon", "lambda": 0.02,
                "primePenalty": {"enabled": True, "lambdaPrime": 0.1}},
    "boundary": {"norm": "L2", "enforceUnitNorm": True, "projectorSweeps": 1},
    "observables": {"recordAmplitudes": True, "recordPhases": False,
                    "metricsInterval": 10, "snapshotsInterval": 32},
    "schedule": {"dt": 0.1, "steps": 256, "restarts": 0, "plateauEps": 1e-6, "plateauT": 150},
    "frequencyScale": 0.1,
    "seed": 0,
    "semantic": False,
}


def fill_defaults(cfg):
    out = dict(cfg)
    for key, dv in DEFAULTS.items():
        if isinstance(dv, dict):
            sub = dict(dv)
            sub.update(out.get(key) or {})
            if key == "entropy":
                pp = dict(dv["primePenalty"])
                pp.update((out.get("entropy") or {}).get("primePenalty") or {})
                sub["primePenalty"] = pp
            out[key] = sub
        elif key not in out or out[key] is None:
            out[key] = dv
    mx = out["mixer"]
    if mx.get("gammaMax") is None:
        mx["gammaMax"] = max(1.0, mx["gamma0"])  # MODEL §4: default max(1, gamma0)
    return out


# ---------------------------------------------------------------------------------------------
# Host constants (MODEL §1)
# ---------------------------------------------------------------------------------------------


class Model:
    def __init__(self, cfg):
        self.cfg = cfg
        self.primes = [int(p) for p in cfg["primes"]]
        self.k = len(self.primes)
        k = self.k
        # MODEL §1: l_i = ln p_i, w_i = 1 + s*l_i, Vmax
        self.l = [math.log(p) for p in self.primes]
        s = float(cfg["frequencyScale"])
        self.w = [1.0 + s * li for li in self.l]
        lmin, lmax = min(self.l), max(self.l)
        vmax = ((lmax - lmin) / 2.0) ** 2
        self.vmax = vmax if vmax != 0.0 else 1.0

        mx = cfg["mixer"]
        self.mixer = mx["type"]
        self.gamma0 = float(mx["gamma0"])
        self.gamma_growth = float(mx["gammaGrowth"])
        self.gamma_max = float(mx["gammaMax"])
        self.temperature0 = float(mx["temperature0"])
        self.beta = float(mx["beta"])
        self.locality_bias = float(mx["localityBias"])
        self.eta = float(mx["learningRate"])

        en = cfg["entropy"]
        self.entropy_base = en["base"]
        self.lam = float(en["lambda"])
        pp = en.get("primePenalty") or {}
        self.penalty = bool(pp.get("enabled", False))
        self.lambda_prime = float(pp.get("lambdaPrime", 0.0))

        bd = cfg["boundary"]
        self.norm = bd["norm"]
        self.enforce_unit_norm = bool(bd["enforceUnitNorm"])
        self.sweeps = int(bd["projectorSweeps"])

        ob = cfg["observables"]
        self.metrics_interval = int(ob["metricsInterval"])
        self.snapshots_interval = int(ob["snapshotsInterval"])

        sc = cfg["schedule"]
        self.h = float(sc["dt"])
        self.steps = int(sc["steps"])
        self.restarts = int(sc["restarts"])
        self.plateau_eps = float(sc["plateauEps"])
        self.plateau_T = int(sc["plateauT"])

        self.seed = int(cfg["seed"]) & MASK32
        self.semantic = bool(cfg.get("semantic", False))

        tgt = cfg.get("resonanceTarget")
        self.has_target = tgt is not None and tgt.get("value") is not None
        self.target = float(tgt["value"]) if self.has_target else None
        self.operator = (tgt.get("operator") if tgt else None) or "R"
        weights = (tgt.get("weights") if tgt else None)
        self.weights = [float(x) for x in weights] if weights is not None else [1.0] * k
        # MODEL §6: converged after max(8, ceil(plateauT/10)) consecutive steps at R_n >= r* - 0.02
        self.conv_needed = max(8, math.ceil(self.plateau_T / 10))

        # MODEL §3: initial amplitudes (missing entries count as 1)
        amps = cfg.get("initialAmplitudes") or []
        self.init_amps = [float(amps[i]) if i < len(amps) else 1.0 for i in range(k)]

        self.sigma = scaffold_phases(cfg["phaseSeeding"], k)
        self.base_kernel = base_kernel(self)  # G.L.S, or the flow kernel


# ---------------------------------------------------------------------------------------------
# MODEL §2: coupling kernel
# ---------------------------------------------------------------------------------------------


def base_kernel(m):
    """Unnormalised base kernel: local/learned -> G.L.S (K_ii = 0); flow -> K_ij = 1 (i != j)."""
    k, l, p, b = m.k, m.l, m.primes, m.locality_bias
    K = [[0.0] * k for _ in range(k)]
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            if m.mixer == "flow":
                K[i][j] = 1.0
                continue
            g = 2.0 * math.sqrt(l[i] * l[j]) / (l[i] + l[j])
            loc = (1.0 - b) + b * min(p[i], p[j]) / max(p[i], p[j])
            sem = 1.0 / (1.0 + abs(p[i] - p[j])) if m.semantic else 1.0
            K[i][j] = g * loc * sem
    return K


def normalised_kernel(m, A):
    """Kn = K / max_i sum_j K_ij; learned: (G.L.S).(1+A) / (2 * max_i sum_j (G.L.S)_ij); k=1: 0."""
    k = m.k
    if k == 1:
        return [[0.0]]
    B = m.base_kernel
    max_row = max(sum(row) for row in B)
    if m.mixer == "learned":
        d = 2.0 * max_row
        return [[(B[i][j] * (1.0 + A[i][j]) / d) if i != j else 0.0 for j in range(k)]
                for i in range(k)]
    return [[B[i][j] / max_row for j in range(k)] for i in range(k)]


# ---------------------------------------------------------------------------------------------
# MODEL §3: state and initialisation
# ---------------------------------------------------------------------------------------------


def scaffold_phases(ps, k):
    """sigma_i = i*gA*[golden] + i*sA*[silver] + c_i (mod 2pi), gA = 2pi/phi^2, sA = 2pi/deltaS^2."""
    phi = (1.0 + math.sqrt(5.0)) / 2.0
    delta_s = 1.0 + math.sqrt(2.0)
    gA = TWO_PI / (phi * phi)
    sA = TWO_PI / (delta_s * delta_s)
    custom = ps.get("customPhases") or []
    out = []
    for i in range(k):
        s = 0.0
        if ps.get("golden"):
            s += i * gA
        if ps.get("silver"):
            s += i * sA
        s += float(custom[i]) if i < len(custom) else 0.0
        out.append(wrap_2pi(s))
    return out


def initial_mass(m):
    """P_i ∝ (A_i/max|A|)^2 (L2) or |A_i|/max|A| (L1), normalised once (MODEL §9: scaled first)."""
    amax = max(abs(a) for a in m.init_amps)
    scaled = [abs(a) / amax for a in m.init_amps]
    raw = [(x * x) if m.norm == "L2" else x for x in scaled]
    tot = sum(raw)
    return [x / tot for x in raw]


def seed_phases(m, rho):
    """theta_i = sigma_i + pi*[A_i<0] (+ jitter pi*min(1,T0)*(2U(seed,rho,0xFFFFFFFF,i)-1) for rho>=1)."""
    out = []
    for i in range(m.k):
        th = m.sigma[i] + (math.pi if m.init_amps[i] < 0.0 else 0.0)
        if rho >= 1:
            th += math.pi * min(1.0, m.temperature0) * (2.0 * uniform(m.seed, rho, 0xFFFFFFFF, i) - 1.0)
        out.append(wrap_2pi(th))
    return out


def amplitudes(m, P):
    """a_i = sqrt(P_i) (L2) or P_i (L1)."""
    if m.norm == "L2":
        return [math.sqrt(x) if x >= 0.0 else math.nan for x in P]
    return list(P)


# ---------------------------------------------------------------------------------------------
# MODEL §4 step 1: dense pass
# ---------------------------------------------------------------------------------------------


def dense_pass(m, Kn, theta, a):
    """Returns (re_i, q_i, f_i, tau_i) with re_i = Re(e^{-i theta_i} z_i)."""
    k = m.k
    cos_t = [math.cos(t) for t in theta]
    sin_t = [math.sin(t) for t in theta]
    ac = [a[j] * cos_t[j] for j in range(k)]
    as_ = [a[j] * sin_t[j] for j in range(k)]
    re, q, f, tau = [], [], [], []
    for i in range(k):
        row = Kn[i]
        zr = zi = qi = 0.0
        for j in range(k):
            kij = row[j]
            zr += kij * ac[j]
            zi += kij * as_[j]
            qi += kij * a[j]
        r_i = cos_t[i] * zr + sin_t[i] * zi  # Re(e^{-i theta_i} z_i)
        im_i = cos_t[i] * zi - sin_t[i] * zr  # Im(e^{-i theta_i} z_i)
        re.append(r_i)
        q.append(qi)
        if qi < 1e-30:
            f.append(0.0)
            tau.append(0.0)
        else:
            f.append(r_i / qi)
            tau.append(im_i / qi)
    return re, q, f, tau


# ---------------------------------------------------------------------------------------------
# MODEL §5: metrics (raw, unclipped; the caller checks finiteness then clips)
# ---------------------------------------------------------------------------------------------


def raw_metrics(m, P, theta, a, re, q, prior):
    k = m.k
    # resonanceStrength r = |sum P e^{i theta}|
    sr = sum(P[i] * math.cos(theta[i]) for i in range(k))
    si = sum(P[i] * math.sin(theta[i]) for i in range(k))
    r = math.hypot(sr, si)
    # coherence C = sum a Re(e^{-i theta} z) / sum a q, 0 when the denominator < 1e-30
    num = sum(a[i] * re[i] for i in range(k))
    den = sum(a[i] * q[i] for i in range(k))
    coh = (num / den) if den >= 1e-30 else (math.nan if math.isnan(den) else 0.0)
    # entropy
    if k == 1:
        ent = 0.0
    elif m.entropy_base == "kl_to_prior":
        kl = 0.0
        for i in range(k):
            pi_ = P[i]
            if pi_ > 0.0 or math.isnan(pi_):
                kl += (pi_ * (math.log(pi_) - math.log(prior[i]))) if prior[i] > 0.0 else math.inf
        ent = max(0.0, 1.0 - kl / math.log(k)) if not math.isnan(kl) else math.nan
    else:
        hsum = 0.0
        for x in P:
            if x > 0.0 or math.isnan(x):
                hsum -= x * math.log(x)
        ent = hsum / math.log(k)
    # locality = 1 - sqrt(Var_P(l)/Vmax)
    mu = sum(P[i] * m.l[i] for i in range(k))
    var = sum(P[i] * (m.l[i] - mu) ** 2 for i in range(k))
    loc = 1.0 - math.sqrt(var / m.vmax) if not (var < 0.0) else math.nan
    # dominance = max P
    dom = math.nan if any(math.isnan(x) for x in P) else max(P)
    return {"resonanceStrength": r, "coherence": coh, "entropy": ent,
            "locality": loc, "dominance": dom}, mu


def controlled_resonance(m, metrics, P, theta):
    """MODEL §4 step 3: R_n by operator (R -> r, R_q -> C, custom -> weighted order parameter)."""
    if m.operator == "R_q":
        return metrics["coherence"]
    if m.operator == "custom":
        k = m.k
        wr = sum(m.weights[i] * P[i] * math.cos(theta[i]) for i in range(k))
        wi = sum(m.weights[i] * P[i] * math.sin(theta[i]) for i in range(k))
        den = sum(m.weights[i] * P[i] for i in range(k))
        if math.isnan(den):
            return math.nan
        return math.hypot(wr, wi) / den if den >= 1e-30 else 0.0
    return metrics["resonanceStrength"]


# ---------------------------------------------------------------------------------------------
# MODEL §4 steps 3-8: one update
# ---------------------------------------------------------------------------------------------


def step_gamma(m, gamma, R):
    """Step 3: grow while below target (or when there is no target), else hold."""
    if (not m.has_target) or R < m.target:
        return min(gamma + m.gamma_growth, m.gamma_max)
    return gamma


def phase_increments(m, tau, gamma, T, rho, n):
    """Step 4's increments h*(-w + gamma*tau) + sqrt(2*T*h)*xi_{n,i}."""
    h = m.h
    amp = math.sqrt(2.0 * T * h)
    return [h * (-m.w[i] + gamma * tau[i]) + amp * xi(m.seed, rho, n, i) for i in range(m.k)]


def step_phases(theta, increments):
    """Step 4: theta <- wrap(theta + increment)."""
    return [wrap_2pi(t + d) for t, d in zip(theta, increments)]


def step_masses(m, P, f, mu):
    """Step 5: exponentiated gradient, stabilised softmax, then projectorSweeps renormalisations."""
    h, k = m.h, m.k
    floor = math.exp(-80.0)
    y = []
    for i in range(k):
        yi = math.log(max(P[i], floor)) if not math.isnan(P[i]) else math.nan
        yi += h * m.lam * f[i]
        if m.penalty:
            yi -= h * m.lambda_prime * (m.l[i] - mu) ** 2 / m.vmax
        y.append(yi)
    ymax = math.nan if any(math.isnan(v) for v in y) else max(y)
    e = [safe_exp(v - ymax) for v in y]
    tot = sum(e)
    P = [v / tot for v in e]
    for _ in range(m.sweeps):
        tot = sum(P)
        P = [v / tot for v in P]
    return P


def step_norm(m, lnNu, R):
    """Step 6: lnNu <- lnNu - h*lambda*(R_n - r*) when enforceUnitNorm is false and a target exists."""
    if (not m.enforce_unit_norm) and m.has_target:
        return lnNu - m.h * m.lam * (R - m.target)
    return lnNu


def step_learned(m, A, theta_new):
    """Step 7 (learned only, uses the phases after step 4):
    A_ij <- (1 - h*eta)*A_ij + h*eta*max(0, cos(theta_i - theta_j)), A_ii = 0."""
    k = m.k
    he = m.h * m.eta
    return [[((1.0 - he) * A[i][j] + he * max(0.0, math.cos(theta_new[i] - theta_new[j])))
             if i != j else 0.0 for j in range(k)] for i in range(k)]


# ---------------------------------------------------------------------------------------------
# engine.md: ticks, records, restarts
# ---------------------------------------------------------------------------------------------


def clean(x):
    """JSON-safe number: non-finite -> None."""
    return x if finite(x) else None


def run(cfg):
    m = Model(fill_defaults(cfg))
    k = m.k

    # State (MODEL §3)
    P = initial_mass(m)
    prior = list(P)  # kl_to_prior: prior = initial mass
    rho = 0
    theta = seed_phases(m, 0)
    lnNu = 0.0
    A = [[0.0] * k for _ in range(k)]
    n = 0
    step = 0
    gamma = min(m.gamma0, m.gamma_max)
    T = m.temperature0
    e_best = math.inf
    c = 0
    conv = 0

    records = []
    while True:
        # 1. dense pass on the current state
        a = amplitudes(m, P)
        Kn = normalised_kernel(m, A)
        re, q, f, tau = dense_pass(m, Kn, theta, a)

        # 2. metrics, R_n, counters
        raw, mu = raw_metrics(m, P, theta, a, re, q, prior)
        # MODEL §9: lnNu NaN or e^lnNu (the amplitudes' scale) overflowing float64 fails the state
        norm_ok = not math.isnan(lnNu) and lnNu <= LN_MAX
        is_finite = all(finite(raw[key]) for key in METRIC_KEYS) and norm_ok
        met = {key: (clip01(raw[key]) if finite(raw[key]) else None) for key in METRIC_KEYS}
        if is_finite:
            R = controlled_resonance(m, met, P, theta)
            E = met["entropy"]
            if E < e_best - m.plateau_eps:
                e_best = E
                c = 0
            else:
                c += 1
            if m.has_target:
                conv = conv + 1 if R >= m.target - 0.02 else 0
        else:
            R = math.nan
        plateau_detected = c >= m.plateau_T
        met["plateauDetected"] = plateau_detected

        # 3. decision, first match wins
        flags = 0
        status = None
        restart_next = False
        if not is_finite:
            flags |= FAILED | TERMINAL
            status = "failed"
        elif m.has_target and conv >= m.conv_needed:
            flags |= CONVERGED | TERMINAL
            status = "converged"
        elif c >= m.plateau_T:
            flags |= PLATEAU
            if rho < m.restarts:
                flags |= RESTART
                restart_next = True
            else:
                flags |= TERMINAL
                status = "plateau"
        elif n == m.steps:
            if rho < m.restarts:
                flags |= RESTART
                restart_next = True
            else:
                flags |= TERMINAL
                status = "completed"
        else:
            # the update is applied: its phase increments must be representable (MODEL §9)
            increments = phase_increments(m, tau, gamma, T, rho, n)
            if not all(finite(d) and abs(d) <= MAX_PHASE_STEP for d in increments):
                flags |= FAILED | TERMINAL
                status = "failed"

        # records (engine.md "Records")
        if m.metrics_interval > 0 and step % m.metrics_interval == 0:
            flags |= METRICS
        if (m.snapshots_interval > 0 and step % m.snapshots_interval == 0) or (flags & TERMINAL):
            flags |= SNAPSHOT
        if flags & (METRICS | SNAPSHOT | TERMINAL | PLATEAU | CONVERGED | FAILED | RESTART):
            rec = {"step": step, "restart": rho, "n": n, "flags": flags, "metrics": dict(met),
                   "gamma": clean(gamma), "lnNu": clean(lnNu), "R": clean(R)}
            if flags & SNAPSHOT:
                rec["phases"] = [clean(t) for t in theta]
                scale = safe_exp(lnNu) if finite(lnNu) else math.nan
                rec["amplitudes"] = [clean(scale * ai) for ai in a]
            records.append(rec)

        if status is not None:
            return {"status": status, "step": step, "restart": rho,
                    "finalMetrics": dict(met), "records": records}

        if restart_next:
            # engine.md 4: re-seed phases with jitter; keep P, lnNu, A; reset n, gamma, T, counters;
            # the global step does not advance.
            rho += 1
            theta = seed_phases(m, rho)
            n = 0
            gamma = min(m.gamma0, m.gamma_max)
            T = m.temperature0
            e_best = math.inf
            c = 0
            conv = 0
            continue

        # MODEL §4 steps 3-8
        gamma_next = step_gamma(m, gamma, R)                       # 3
        theta_new = step_phases(theta, increments)                 # 4 (uses gamma_n, T_n)
        P = step_masses(m, P, f, mu)                               # 5 (f, mu of state n)
        lnNu = step_norm(m, lnNu, R)                               # 6
        if m.mixer == "learned":
            A = step_learned(m, A, theta_new)                      # 7 (phases after step 4)
        theta = theta_new
        gamma = gamma_next
        T = T * m.beta                                             # running product
        n += 1                                                     # 8
        step += 1


def main(argv):
    if "--selftest" in argv[1:]:
        return 0 if selftest() else 1
    cfg = json.load(sys.stdin)
    out = run(cfg)
    sys.stdout.write(json.dumps(out, allow_nan=False, separators=(",", ":")))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
