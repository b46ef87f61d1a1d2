#!/usr/bin/env python3
"""Make tiny random-weight Hugging Face transformers models with reference logits.

What it makes (one folder per fixture under OUTDIR):

  llama3_scaled      LlamaForCausalLM, llama3 rope scaling, GQA 4, head_dim 64, F32
  mistral_sharded    MistralForCausalLM, plain rope theta 1e6, head_dim 128, F16, 2 shards + index
  qwen2_yarn_tied    Qwen2ForCausalLM, q/k/v biases, yarn, tied embeddings, head_dim 80, BF16
  phi3_longrope      Phi3ForCausalLM (fused qkv / gate_up), longrope short+long factors, head_dim 96, F32
  llama_linear_tied  LlamaForCausalLM, linear rope scaling, tied embeddings, head_dim 64, BF16

Each folder holds config.json (exactly as transformers saved it), the safetensors file(s)
and reference.json:

  {"name", "transformers_version", "torch_version", "weights_dtype": "F32|F16|BF16",
   "cases": [{"prompt_ids": [...], "greedy_ids": [t1..t4], "logits": [[vocab floats] x4], ...}],
   "rope": {"inv_freq": [...], "attention_scaling": float, ...},
   "details": {...things a C++ implementation needs that config.json does not say...}}

logits[0] are the logits at the last prompt position (argmax = t1); logits[i] (i = 1..3) are
the logits after feeding t_i (argmax = t_{i+1}): 4 greedy steps, each computed by running the
whole sequence again (no KV cache); a KV-cache decode is run too and its largest difference is
recorded as kv_cache_max_abs_diff. No BOS is added. Logits are rounded to 7 significant digits;
rope inv_freq values to 9 (enough to give back the exact float32).

Weights are drawn from fixed seeds, rounded to the storage dtype first (so the stored weights
are exact), the reference is computed on the CPU in float32 with eager attention, then the
model is saved in the storage dtype and loaded back once to check the logits are unchanged.

How to run (on the GPU machine, which has torch + transformers + safetensors; only the CPU is
used, so any machine with those packages will do):

  PYTHONUNBUFFERED=1 python3 tools/make_hf_fixtures.py OUTDIR

It is rerunnable: each fixture folder is deleted and written again. Results are copied into
tests/fixtures/hf/ of the repository.
"""

import argparse
import json
import math
import os
import shutil
import sys

import torch
import transformers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB = 256
N_DECODE = 4

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def r7(x):
    return float(f"{float(x):.7g}")


def r9(x):
    return float(f"{float(x):.9g}")


def seeded_list(seed, n, lo, hi):
    g = torch.Generator().manual_seed(seed)
    return [round(lo + (hi - lo) * float(v), 4) for v in torch.rand(n, generator=g, dtype=torch.float64)]


def fixture_specs():
    """Each spec: name, model class, config class, config kwargs, dtype, seed, prompt lengths.

    Weights: norms 1 + 0.1*N(0,1), biases 0.1*N(0,1), embeddings / lm_head 0.1*N(0,1), other
    matrices lin_std*N(0,1). The seeds and lin_std were picked (by a search over 40 seeds, not part
    of this script) so that every greedy continuation has at least 3 distinct tokens and the gap
    between the top two logits is >= 0.1 at every step; with the tied models and smaller lin_std
    the models just repeated the last token.
    """
    common = dict(
        vocab_size=VOCAB,
        num_hidden_layers=2,
        hidden_act="silu",
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=None,
        tie_word_embeddings=False,
        use_cache=True,
        attention_dropout=0.0,
    )
    specs = []

    specs.append(dict(
        name="llama3_scaled", cls=LlamaForCausalLM, cfg_cls=LlamaConfig, dtype="F32", seed=1017, lin_std=0.12,
        prompt_lens=[17, 33], expect_rope_type="llama3",
        cfg=dict(common, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                 num_key_value_heads=1, head_dim=64, max_position_embeddings=256,
                 rms_norm_eps=1e-5, attention_bias=False, mlp_bias=False,
                 rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                                      low_freq_factor=1.0, high_freq_factor=4.0,
                                      original_max_position_embeddings=32)),
    ))

    specs.append(dict(
        name="mistral_sharded", cls=MistralForCausalLM, cfg_cls=MistralConfig, dtype="F16", seed=2041, lin_std=0.1,
        prompt_lens=[17, 33], expect_rope_type="default", shards=2,
        cfg=dict(common, hidden_size=128, intermediate_size=256, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=128, max_position_embeddings=128,
                 rms_norm_eps=1e-6, sliding_window=None,
                 rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
    ))

    # Qwen2Config has no head_dim field: head_dim = hidden_size / num_attention_heads = 160 / 2 = 80.
    specs.append(dict(
        name="qwen2_yarn_tied", cls=Qwen2ForCausalLM, cfg_cls=Qwen2Config, dtype="BF16", seed=3015, lin_std=0.15,
        prompt_lens=[17, 33], expect_rope_type="yarn",
        cfg=dict(common, hidden_size=160, intermediate_size=128, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=128, rms_norm_eps=1e-6,
                 tie_word_embeddings=True, use_sliding_window=False,
                 rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                      original_max_position_embeddings=32)),
    ))

    # Phi3Config has no head_dim field and validates the longrope factor lists against
    # hidden_size / num_attention_heads, so head_dim 96 needs hidden_size = heads * 96.
    # 4 heads would mean hidden 384 (~5.5 MB of F32 weights), so this uses 2 heads, 1 KV head
    # (GQA ratio 2, as 4/2), hidden 192.
    head_dim = 96
    specs.append(dict(
        name="phi3_longrope", cls=Phi3ForCausalLM, cfg_cls=Phi3Config, dtype="F32", seed=4018, lin_std=0.1,
        prompt_lens=[12, 48], expect_rope_type="longrope",
        cfg=dict(common, hidden_size=2 * head_dim, intermediate_size=128, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=128,
                 original_max_position_embeddings=32, rms_norm_eps=1e-5, sliding_window=None,
                 resid_pdrop=0.0, embd_pdrop=0.0,
                 rope_parameters=dict(rope_type="longrope", rope_theta=10000.0,
                                      short_factor=seeded_list(4104, head_dim // 2, 1.0, 2.0),
                                      long_factor=seeded_list(4204, head_dim // 2, 2.0, 8.0),
                                      original_max_position_embeddings=32)),
    ))

    specs.append(dict(
        name="llama_linear_tied", cls=LlamaForCausalLM, cfg_cls=LlamaConfig, dtype="BF16", seed=5041, lin_std=0.15,
        prompt_lens=[17, 33], expect_rope_type="linear",
        cfg=dict(common, hidden_size=96, intermediate_size=192, num_attention_heads=2,
                 num_key_value_heads=2, head_dim=64, max_position_embeddings=128,
                 rms_norm_eps=1e-5, tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
                 rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0)),
    ))
    return specs


def init_weights(model, seed, lin_std):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied weights appear once
            if p.dim() == 1:
                if "norm" in name:
                    v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
                else:  # biases
                    v = 0.1 * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in name or "lm_head" in name:
                v = 0.1 * torch.randn(p.shape, generator=g)
            else:
                v = lin_std * torch.randn(p.shape, generator=g)
            p.copy_(v.to(p.dtype))


def round_to(model, dtype):
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.to(dtype).to(torch.float32)


class RopeRecorder:
    """Records the inv_freq and attention_scaling the rotary embedding actually used."""

    def __init__(self, rotary):
        self.calls = []
        rotary.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        pos = args[1] if len(args) > 1 else None
        self.calls.append(dict(
            inv_freq=module.inv_freq.detach().to(torch.float32).clone(),
            attention_scaling=float(module.attention_scaling),
            max_pos=int(pos.max()) if pos is not None else None,
        ))


def greedy_recompute(model, prompt):
    ids = list(prompt)
    logits_out, greedy = [], []
    for _ in range(N_DECODE):
        out = model(input_ids=torch.tensor([ids]), use_cache=False)
        lg = out.logits[0, -1].to(torch.float32)
        logits_out.append(lg)
        t = int(torch.argmax(lg))
        greedy.append(t)
        ids.append(t)
    return greedy, logits_out


def greedy_kv(model, prompt):
    out = model(input_ids=torch.tensor([prompt]), use_cache=True)
    past = out.past_key_values
    logits_out, greedy = [], []
    lg = out.logits[0, -1].to(torch.float32)
    for step in range(N_DECODE):
        logits_out.append(lg)
        t = int(torch.argmax(lg))
        greedy.append(t)
        if step + 1 == N_DECODE:
            break
        out = model(input_ids=torch.tensor([[t]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        lg = out.logits[0, -1].to(torch.float32)
    return greedy, logits_out


def margin(lg):
    top = torch.topk(lg, 2).values
    return float(top[0] - top[1])


def yarn_details(rp, head_dim):
    base = rp["rope_theta"]
    dim = head_dim
    omp = rp["original_max_position_embeddings"]
    beta_fast = rp.get("beta_fast") or 32
    beta_slow = rp.get("beta_slow") or 1

    def corr(nrot):
        return (dim * math.log(omp / (nrot * 2 * math.pi))) / (2 * math.log(base))

    low_raw, high_raw = corr(beta_fast), corr(beta_slow)
    truncate = rp.get("truncate", True)
    low, high = (math.floor(low_raw), math.ceil(high_raw)) if truncate else (low_raw, high_raw)
    low, high = max(low, 0), min(high, dim - 1)
    factor = rp["factor"]
    return dict(
        beta_fast=beta_fast, beta_slow=beta_slow, truncate=truncate,
        correction_low_raw=low_raw, correction_high_raw=high_raw,
        correction_low=low, correction_high=high,
        formula=("pos_freqs = theta^(2i/dim); extrap = 1/pos_freqs; interp = 1/(factor*pos_freqs); "
                 "corr_dim(n) = dim*ln(orig_max/(n*2*pi))/(2*ln(theta)); low = floor(corr_dim(beta_fast)), "
                 "high = ceil(corr_dim(beta_slow)) when truncate (default true), then low = max(low,0), "
                 "high = min(high, dim-1); if low == high: high += 0.001; "
                 "ramp(i) = clamp((i - low)/(high - low), 0, 1) for i in 0..dim/2-1; "
                 "extrap_factor = 1 - ramp; inv_freq = interp*(1-extrap_factor) + extrap*extrap_factor "
                 "(i.e. interp*ramp + extrap*(1-ramp)); attention_factor = 0.1*ln(factor)+1 "
                 "(no mscale/mscale_all_dim); cos and sin are both multiplied by attention_factor"),
        attention_factor_expected=0.1 * math.log(factor) + 1.0,
    )


def independent_inv_freq(rp, head_dim, max_pos, long=False):
    """The documented formulas, in float64, to check what transformers used (and the notes)."""
    base, dim = rp["rope_theta"], head_dim
    inv = [1.0 / base ** (2 * i / dim) for i in range(dim // 2)]
    t = rp["rope_type"]
    if t == "default":
        return inv, 1.0
    if t == "linear":
        return [v / rp["factor"] for v in inv], 1.0
    if t == "llama3":
        f, lo, hi, omp = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
        out = []
        for v in inv:
            wl = 2 * math.pi / v
            if wl < omp / hi:
                out.append(v)
            elif wl > omp / lo:
                out.append(v / f)
            else:
                sm = (omp / wl - lo) / (hi - lo)
                out.append((1 - sm) * v / f + sm * v)
        return out, 1.0
    if t == "yarn":
        y = yarn_details(rp, head_dim)
        low, high = y["correction_low"], y["correction_high"]
        if low == high:
            high += 0.001
        out = []
        for i, v in enumerate(inv):
            ramp = min(max((i - low) / (high - low), 0.0), 1.0)
            out.append(v / rp["factor"] * ramp + v * (1 - ramp))
        return out, y["attention_factor_expected"]
    if t == "longrope":
        omp = rp["original_max_position_embeddings"]
        fac = rp["long_factor"] if long else rp["short_factor"]
        s = max_pos / omp
        att = 1.0 if s <= 1 else math.sqrt(1 + math.log(s) / math.log(omp))
        return [v / f for v, f in zip(inv, fac)], att
    raise ValueError(t)


def check_close(name, what, got, want, rtol=2e-6):
    for a, b in zip(got, want):
        assert abs(a - b) <= rtol * abs(b) + 1e-12, f"{name}: {what}: {a} vs {b}"
    assert len(got) == len(want), f"{name}: {what}: length {len(got)} vs {len(want)}"


def make_fixture(spec, outdir):
    name = spec["name"]
    print(f"=== {name}", flush=True)
    torch.manual_seed(spec["seed"])
    cfg = spec["cfg_cls"](**spec["cfg"])
    rp = cfg.rope_parameters
    print("  rope_parameters after construction:", rp, flush=True)
    assert isinstance(rp, dict) and rp.get("rope_type") == spec["expect_rope_type"], rp
    cfg._attn_implementation = "eager"
    model = spec["cls"]._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    init_weights(model, spec["seed"], spec["lin_std"])
    sdtype = DTYPES[spec["dtype"]]
    round_to(model, sdtype)
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "tie broken"

    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rotary = model.model.rotary_emb
    rec = RopeRecorder(rotary)

    g = torch.Generator().manual_seed(spec["seed"] + 77)
    cases = []
    kv_diffs = []
    with torch.no_grad():
        for n in spec["prompt_lens"]:
            prompt = [int(x) for x in torch.randint(3, VOCAB, (n,), generator=g)]
            rec.calls.clear()
            greedy, logits = greedy_recompute(model, prompt)
            used = rec.calls
            inv_set = {tuple(c["inv_freq"].tolist()) for c in used}
            assert len(inv_set) == 1, f"{name}: inv_freq changed within a case"
            g_kv, l_kv = greedy_kv(model, prompt)
            kvd = max(float((a - b).abs().max()) for a, b in zip(logits, l_kv))
            kv_diffs.append(kvd)
            assert g_kv == greedy, f"{name}: KV-cache greedy differs {g_kv} vs {greedy}"
            case = dict(
                prompt_ids=prompt,
                greedy_ids=greedy,
                logits=[[r7(v) for v in lg.tolist()] for lg in logits],
                top2_margins=[r7(margin(lg)) for lg in logits],
                kv_cache_max_abs_diff=r7(kvd),
                rope_inv_freq_used=[r9(v) for v in used[0]["inv_freq"].tolist()],
                rope_attention_scaling_used=r9(used[0]["attention_scaling"]),
            )
            cases.append(case)
            print(f"  prompt {n}: greedy {greedy} margins {case['top2_margins']} "
                  f"kv diff {kvd:.2e} logit range [{min(map(float, logits[0])):.3f}, "
                  f"{max(map(float, logits[0])):.3f}]", flush=True)

    # Rope section
    rope = dict(rope_type=rp["rope_type"], head_dim=head_dim, rotary_dim=head_dim,
                rope_theta=rp["rope_theta"])
    if rp["rope_type"] == "longrope":
        rope_fn = transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS["longrope"]
        omp = rp["original_max_position_embeddings"]
        short_inv, att = rope_fn(model.config, "cpu")
        long_inv, att_l = rope_fn(model.config, "cpu", seq_len=omp + 1)
        # What the model really used in each case
        short_case, long_case = cases[0], cases[1]
        assert short_case["rope_inv_freq_used"] == [r9(v) for v in short_inv.tolist()], "short inv_freq mismatch"
        assert long_case["rope_inv_freq_used"] == [r9(v) for v in long_inv.tolist()], "long inv_freq mismatch"
        rope.update(
            inv_freq_short=[r9(v) for v in short_inv.tolist()],
            inv_freq_long=[r9(v) for v in long_inv.tolist()],
            attention_scaling=r9(att),
            attention_scaling_long=r9(att_l),
            original_max_position_embeddings=omp,
            selection=("transformers picks per forward call: seq_len = max(position_ids)+1; long factors if "
                       "seq_len > original_max_position_embeddings, else short factors. In case 0 the whole "
                       "run (prompt + 3 fed tokens) stays <= original_max_position_embeddings so short "
                       "factors are used throughout; case 1's prompt alone is > original_max so long factors "
                       "are used throughout. (A KV cache that crosses the boundary mixes them; "
                       "Phi3ForCausalLM.prepare_inputs_for_generation drops the cache at that point.)"),
            formula=("inv_freq[i] = 1 / (ext_factor[i] * theta^(2i/dim)); attention_scaling = "
                     "sqrt(1 + ln(s)/ln(original_max_position_embeddings)) with s = "
                     "max_position_embeddings / original_max_position_embeddings (rope_parameters has no "
                     "'factor'), or 1 if s <= 1; the same scaling is used for short and long; cos and sin "
                     "are both multiplied by it"),
            scale_s=cfg.max_position_embeddings / omp,
        )
        for k in ("short_factor", "long_factor"):
            rope[k] = rp[k]
    else:
        inv = cases[0]["rope_inv_freq_used"]
        for c in cases[1:]:
            assert c["rope_inv_freq_used"] == inv, f"{name}: inv_freq differs between cases"
        rope.update(inv_freq=inv, attention_scaling=cases[0]["rope_attention_scaling_used"])
        if rp["rope_type"] == "yarn":
            rope["yarn"] = yarn_details(rp, head_dim)
        if rp["rope_type"] == "llama3":
            omp = rp["original_max_position_embeddings"]
            rope["llama3"] = dict(
                low_freq_wavelen=omp / rp["low_freq_factor"], high_freq_wavelen=omp / rp["high_freq_factor"],
                formula=("wavelen = 2*pi/inv_freq; wavelen < high_freq_wavelen: keep; wavelen > "
                         "low_freq_wavelen: inv_freq/factor; otherwise smooth = (orig_max/wavelen - "
                         "low_freq_factor)/(high_freq_factor - low_freq_factor), inv_freq = "
                         "(1-smooth)*inv_freq/factor + smooth*inv_freq"))
        if rp["rope_type"] == "linear":
            rope["linear"] = dict(formula="inv_freq = theta^(-2i/dim) / factor")
    for c in cases:
        c.pop("rope_inv_freq_used")
    # Check the documented formulas against what the model used
    mp = cfg.max_position_embeddings
    if rp["rope_type"] == "longrope":
        for key, lg in (("short", False), ("long", True)):
            inv, att = independent_inv_freq(rp, head_dim, mp, long=lg)
            check_close(name, f"inv_freq_{key}", rope[f"inv_freq_{key}"], inv)
            check_close(name, "attention_scaling", [rope["attention_scaling"]], [att])
    else:
        inv, att = independent_inv_freq(rp, head_dim, mp)
        check_close(name, "inv_freq", rope["inv_freq"], inv)
        check_close(name, "attention_scaling", [rope["attention_scaling"]], [att])
    print("  rope formulas check out; attention_scaling", rope["attention_scaling"], flush=True)

    details = dict(
        architecture=type(model).__name__,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=head_dim,
        head_dim_in_config=("head_dim" in cfg.to_dict() and cfg.to_dict()["head_dim"] is not None),
        rms_norm_eps=cfg.rms_norm_eps,
        rms_norm=("y = w * (x / sqrt(mean(x^2) + eps)), computed in float32, weight applied after "
                  "casting back to the input dtype"),
        hidden_act=cfg.hidden_act,
        mlp="down(silu(gate(x)) * up(x))",
        attention_softmax_scale=f"head_dim**-0.5 = {head_dim ** -0.5!r}",
        rope_layout=("rotate_half (NeoX/HF style): the rotary dim is split in two halves, "
                     "x' = x*cos + rotate_half(x)*sin with rotate_half([a, b]) = [-b, a]; cos/sin = "
                     "cos/sin(pos*inv_freq) repeated for both halves, times attention_scaling. Positions "
                     "start at 0 at the first prompt token."),
        tie_word_embeddings=bool(cfg.tie_word_embeddings),
        attention_bias=bool(getattr(cfg, "attention_bias", False)) or spec["cls"] is Qwen2ForCausalLM,
        sliding_window=getattr(cfg, "sliding_window", None),
        bos_added=False,
        reference_compute=("CPU float32, attn_implementation=eager, weights rounded to the storage "
                           "dtype then upcast to float32; each step recomputes the full sequence"),
        kv_cache_max_abs_diff=r7(max(kv_diffs)),
    )
    if spec["cls"] is Qwen2ForCausalLM:
        details["qkv_bias"] = "q_proj, k_proj, v_proj have biases; o_proj and MLP do not"
    if spec["cls"] is Phi3ForCausalLM:
        details["fused_layout"] = ("self_attn.qkv_proj.weight rows = [q (heads*head_dim), k (kv*head_dim), "
                                   "v (kv*head_dim)]; mlp.gate_up_proj.weight rows = [gate (intermediate), "
                                   "up (intermediate)] (chunk(2) along the output dim)")
        details["phi3_deviation"] = ("brief asked 4 heads / 2 KV heads; Phi3Config derives head_dim from "
                                     "hidden_size/num_attention_heads, so 2 heads / 1 KV head, hidden 192 are "
                                     "used to keep head_dim 96 and the fixture small")
    if spec["cls"] is MistralForCausalLM:
        details["note"] = "sliding_window null: full causal attention"

    # Save
    d = os.path.join(outdir, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    save_model = model.to(sdtype)
    kwargs = {}
    if spec.get("shards"):
        total = sum(p.numel() * p.element_size() for p in save_model.state_dict().values())
        kwargs["max_shard_size"] = int(total * 0.6)
    save_model.save_pretrained(d, **kwargs)
    files = sorted(os.listdir(d))
    st = [f for f in files if f.endswith(".safetensors")]
    if spec.get("shards"):
        assert len(st) == spec["shards"], f"{name}: expected {spec['shards']} shards, got {st}"
        assert "model.safetensors.index.json" in files, files
    else:
        assert st == ["model.safetensors"], files

    # Check the saved dtype and the round trip
    from safetensors import safe_open
    names = []
    for f in st:
        with safe_open(os.path.join(d, f), "pt") as sf:
            for k in sf.keys():
                names.append(k)
                t = sf.get_tensor(k)
                assert t.dtype == sdtype, (k, t.dtype)
    details["tensor_names"] = sorted(names)

    reloaded = spec["cls"].from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    reloaded.eval()
    with torch.no_grad():
        for c in cases:
            gr, lg = greedy_recompute(reloaded, c["prompt_ids"])
            assert gr == c["greedy_ids"], f"{name}: reload greedy differs"
            for a, b in zip(lg, c["logits"]):
                diff = float((a - torch.tensor(b)).abs().max())
                assert diff < 1e-4, f"{name}: reload logits differ by {diff}"

    with open(os.path.join(d, "config.json")) as f:
        saved_cfg = json.load(f)
    rope_keys = {k: saved_cfg[k] for k in ("rope_parameters", "rope_scaling", "rope_theta",
                                             "original_max_position_embeddings", "head_dim")
                 if k in saved_cfg}
    print("  saved config rope keys:", json.dumps(rope_keys)[:400], flush=True)

    ref = dict(
        name=name,
        transformers_version=transformers.__version__,
        torch_version=torch.__version__,
        weights_dtype=spec["dtype"],
        cases=cases,
        rope=rope,
        details=details,
    )
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    sizes = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
    print("  files:", sizes, flush=True)
    return dict(name=name, greedy=[c["greedy_ids"] for c in cases], rope_keys=rope_keys, sizes=sizes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--only", nargs="*", help="fixture names to make (default: all)")
    args = ap.parse_args()

    torch.set_default_dtype(torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__} transformers {transformers.__version__}", flush=True)

    os.makedirs(args.outdir, exist_ok=True)
    summary = []
    for spec in fixture_specs():
        if args.only and spec["name"] not in args.only:
            continue
        summary.append(make_fixture(spec, args.outdir))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
