"""The spec keys: `Point` (what one measurement compiles) and `Sweep` (how the sweep
runs), each with its description, type, range and cross-key checks, and the groups of keys
(which keys each workload reads, which a program factory may take, which only control how
a point is measured).

A check fails with a ValueError naming the key; profiler/spec.py turns it into a one-line
`SpecError`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from profiler import presets, refs, targets

_MESH = r"^[1-9][0-9]*x[1-9][0-9]*$"
_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)


class Point(BaseModel):
    """One fully-resolved configuration: what one measurement compiles.

    Every field becomes a `cfg_<field>` column of the results.
    """

    model_config = _STRICT

    workload: Literal["forward", "train", "program", "decode"] = Field(
        "forward", description="What is compiled: 'forward' = the block stack (key block) applied to x; "
        "'train' = one AdamW step on the mean squared output (params and optimizer state donated); "
        "'program' = the call a user's factory returns (key program; set by it by default); "
        "'decode' = a decoder-only language model's prefill and one-token decode step with a "
        "KV cache (two programs, phases 'prefill' and 'decode').")
    program: str = Field(
        "", description="Workload 'program': 'package.module:factory', imported from the current "
        "directory or PYTHONPATH. The factory gets the model keys it names as keyword arguments "
        "(a key the spec leaves unset: the parameter's own default, if it has one) and returns "
        "(fn, args) (jax.jit(fn) measured on args as they are), (fn, args, kwargs) (a jitted fn "
        "traced as it is, with its own static and donated arguments) or a dict with fn, args, "
        "kwargs and jax.jit options (docs/own-model.md). Its other parameters are keys too (knobs). "
        "A parameter named like a key that sets how the point is measured (run, steps, devices, "
        "the sweep keys) is an error.")
    block: str = Field(
        "", description="Workloads 'forward' and 'train': the block that is stacked, "
        "'package.module:Class', imported from the current directory or PYTHONPATH: a flax.linen "
        "Module (api 'linen') or an nnx.Module taking rngs (api 'nnx') whose call maps x of shape "
        "(batch, seq, hidden) to the same shape and dtype, or to (x, aux). Its constructor gets the "
        "spec keys named like its fields (dtype as a dtype; hidden_dim and num_heads get hidden and "
        "heads). '' = the seed's SimpleBlock of the api. Built-in families (docs/models.md): 'llama' "
        "(RMSNorm, rotary embedding, grouped-query attention, SwiGLU MLP) and 'moe' (the same "
        "attention, a routed mixture-of-experts MLP), stacked inside a language model (token "
        "embedding, final norm, LM head; input tokens (batch, seq), loss: next-token cross-entropy).")
    preset: str = Field(
        "", description="A published model shape (profiler/presets.py: llama3-8b, llama3-70b, "
        "mixtral-8x7b, llama-tiny, moe-tiny): sets block, layers, hidden, heads, kv_heads, mlp, vocab "
        "(and experts, top_k); keys given beside it override it. '' = none.")
    mode: Literal["loop", "scan", "scan_shared"] = Field(
        "scan", description="How layers are stacked: 'loop' = Python loop (unrolled program), "
        "'scan' = scan with per-layer params, 'scan_shared' = scan with one set of params.")
    layers: int = Field(8, ge=1, description="Number of stacked blocks.")
    hidden: int = Field(256, ge=1, description="Hidden (model) dimension.")
    heads: int = Field(4, ge=1, description="Attention heads; must divide hidden (for the built-in block).")
    batch: int = Field(16, ge=1, description="Batch size of the input.")
    seq: int = Field(32, ge=1, description="Sequence length of the input.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Compute dtype of the blocks and the input.")
    unroll: int = Field(
        1, ge=1, description="Scan modes only: layers per loop iteration (nn.scan unroll); "
        "the loop runs layers // unroll times with the remainder outside.")
    remat: str = Field(
        "none", description="Rematerialisation per block: 'none', 'full' (save nothing), or "
        "the name of a policy in jax.checkpoint_policies (e.g. 'dots_saveable').")
    api: Literal["linen", "nnx"] = Field(
        "linen", description="Flax API the block and the stack are written in: 'linen' "
        "(nn.scan, nn.remat) or 'nnx' (nnx.vmap + nnx.scan, nnx.remat).")
    run: bool = Field(
        False, description="Also execute the compiled program: time the first call and "
        "`steps` steady-state calls. Off = compile-only: the built-in workloads allocate nothing "
        "(a program factory allocates what it builds itself).")
    steps: int = Field(5, ge=1, description="Steady-state calls timed when run is on.")
    anatomy: bool = Field(
        False, description="Also break each program's trace, lowering and compile into components "
        "(time_trace_*, time_lower_*, time_xla_* columns; per-event detail in the results "
        "folder's _anatomy/): a profiled twin of the measurement, run first in a forked process, "
        "so the row's own timings stay unprofiled. Doubles the compile work (docs/anatomy.md).")
    devices: int = Field(
        1, ge=1, description="Devices the measuring process sees; on CPU it sets the host "
        "platform device count before JAX starts. A TPU or GPU target sets it to the target's "
        "devices.")
    target: str = Field(
        "cpu", description="What the point is compiled for, on this host, without the device: "
        "'cpu' = this host's CPU (and its XLA CPU compiler); 'tpu:<generation>:<topology>' = the "
        "chips of a TPU topology as jax.experimental.topologies.get_topology_desc names it "
        "('tpu:v5e:2x2', 'tpu:v5p:2x2x1', 'tpu:v6e:2x2', 'tpu:v5e:1x1'; generations v2, v3, v4, v5e, "
        "v5p, v6e, tpu7x), compiled by libtpu (extra 'tpu'); 'gpu:<model>[:<count>]' = count "
        "(default 1) GPUs of a model ('gpu:h100:8'; a100, h100, b200) described by their "
        "published facts, compiled by JAX's CUDA plugin (extra 'gpu'). A TPU or GPU target "
        "compiles only (run = false) and its mesh must use all its devices (docs/tpu.md).")
    jax: str | None = Field(
        None, pattern=r"^\d+(\.\d+){1,3}$", description="The JAX release that measures the point, "
        "e.g. '0.8.3': its measuring process runs in an environment of that release's jax and "
        "jaxlib with the newest flax and optax that accept it, built once and cached (docs/releases.md). "
        "Unset: the JAX the profiler is installed with. A list compares releases in one run, "
        "interleaved (`python -m profiler releases`).")
    flax: str | None = Field(
        None, pattern=r"^\d+(\.\d+){1,3}$", description="The flax release of the `jax` key's "
        "environment (unset: the newest flax that accepts that jax). Needs `jax`.")
    knobs: dict[str, bool | int | float | str] = Field(
        default_factory=dict, description="Workload 'program': the factory's own parameters that no "
        "other key names (e.g. emb_dim), set in a spec as keys of their own (a list makes a grid "
        "axis); each becomes a cfg_<name> column. Not written as a key itself.")
    # Keys of workload 'decode'. Their defaults are fixed: every other point carries them
    # and they are part of its id.
    prompt_len: int = Field(16, ge=1, description="Decode: tokens of the prompt the prefill writes into the cache.")
    max_len: int = Field(64, ge=2, description="Decode: positions the KV cache holds (prompt and generated tokens).")
    kv_heads: int | None = Field(
        None, ge=1, description="Decode: key/value heads (grouped-query attention); must divide "
        "heads. None = heads (multi-head attention).")
    vocab: int = Field(256, ge=2, description="Decode: vocabulary size (embedding rows, logits).")
    mesh: str = Field(
        "1x1", pattern=_MESH, description="Device mesh 'DxM', D devices on the data axis (batch, "
        "cache) times M on the model axis (heads, MLP, vocab). Decode; forward and train (blocks "
        "'llama' and 'moe': the data axis also shards the parameters' hidden dimension (FSDP); other "
        "blocks: the batch is split on data, the parameters replicated), where D·M must equal devices, "
        "which it sets when devices is not given; program: arguments replicated on it. A TPU or GPU "
        "target: D·M must be the target's devices (docs/models.md, docs/tpu.md).")
    donate: bool = Field(True, description="Decode: donate the KV cache to the prefill and decode programs.")
    kv_cache: Literal["scanned", "carried"] = Field(
        "scanned", description="Decode: how the stacked cache (layers, batch, max_len, kv_heads, "
        "head_dim) travels through the layers. 'scanned' = each layer gets its slice and the new "
        "slices are stacked into a new cache (scan xs/ys; the loop's slice-and-stack); 'carried' "
        "= the whole cache is carried through the layers and layer i writes slot i in place.")
    gen_tokens: int = Field(
        8, ge=2, description="Decode, run on: tokens generated greedily after the prompt, the "
        "first by the prefill, each further one by one decode step.")

    # Keys of the built-in block families (block 'llama' and 'moe'); fixed defaults as above.
    mlp: int | None = Field(
        None, ge=1, description="Blocks 'llama' and 'moe': intermediate width of the SwiGLU MLP "
        "(of each expert). None = 4·hidden.")
    experts: int = Field(8, ge=1, description="Block 'moe': experts per layer.")
    top_k: int = Field(2, ge=1, description="Block 'moe': experts each token is routed to; at most experts.")
    capacity_factor: float = Field(
        1.25, gt=0, description="Block 'moe': token slots per expert and sequence = "
        "ceil(capacity_factor · seq · top_k / experts), at most seq; tokens past it are dropped.")
    weight_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Blocks 'llama' and 'moe': dtype the parameters (and so the "
        "gradients and AdamW moments) are stored in; compute runs in dtype (MaxText's "
        "weight_dtype). float32 with dtype bfloat16 = bf16 compute with fp32 master weights and "
        "optimizer state; bfloat16 with bfloat16 = pure bf16.")

    @model_validator(mode="before")
    @classmethod
    def _program_implies_workload(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("program") and "workload" not in values:
            return {**values, "workload": "program"}
        return values

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        if values.get("preset") and values.get("workload", "forward") not in ("forward", "train"):
            raise ValueError(f"key 'preset': applies only to workloads 'forward' and 'train', "
                             f"not {values.get('workload')!r}")
        values = presets.expand(values)
        # A family's training step on a mesh needs exactly the mesh's devices: unless the
        # spec says otherwise, it gets them (so that a grid can sweep the mesh).
        mesh = values.get("mesh")
        target = values.get("target", "cpu")
        if isinstance(target, str) and target != "cpu" and "devices" not in values:
            # The target's devices, whatever the mesh: a mesh that does not use them all
            # is refused by name in _target_checks.
            try:
                values = {**values, "devices": targets.parse(target).devices}
            except ValueError:
                pass  # _target_checks names the problem
        elif ((values.get("block") in BLOCK_FAMILIES or mesh not in (None, "1x1"))
                and values.get("workload", "forward") in ("forward", "train")
                and "devices" not in values and isinstance(mesh, str) and re.fullmatch(_MESH, mesh)):
            data, model = mesh.split("x")
            values = {**values, "devices": int(data) * int(model)}
        return values

    @model_validator(mode="after")
    def _cross_checks(self) -> Point:
        if self.knobs and self.workload != "program":
            raise ValueError(f"key {next(iter(self.knobs))!r}: a program factory's own parameter; applies only to "
                             "workload 'program'")
        if self.workload == "program" and not self.program:
            raise ValueError("key 'program': workload 'program' needs program = 'package.module:factory'")
        if self.program and self.workload != "program":
            raise ValueError(f"key 'workload': key program applies only to workload 'program' (got {self.workload!r})")
        if self.flax and not self.jax:
            raise ValueError("key 'flax': needs key jax (the release whose environment gets this flax)")
        family = self.block in BLOCK_FAMILIES
        if self.block and self.workload not in ("forward", "train"):
            raise ValueError(f"key 'block': applies only to workloads 'forward' and 'train', not {self.workload!r}")
        for key, ref in (("program", self.program), ("block", "" if family else self.block)):
            try:
                if ref:
                    refs.check_format(ref)
            except ValueError as e:
                raise ValueError(f"key '{key}': {e}") from None
        if (not self.block or family) and self.workload != "program" and self.hidden % self.heads:
            raise ValueError(f"key 'hidden': {self.hidden} is not divisible by heads={self.heads}")
        if self.unroll != 1 and self.mode == "loop":
            raise ValueError("key 'unroll': only applies to scan modes, not mode='loop'")
        if self.remat not in ("none", "full") and self.remat not in remat_names():
            raise ValueError(f"key 'remat': unknown policy {self.remat!r}; valid: {', '.join(remat_names())}")
        if self.workload == "decode":
            self._decode_checks()
        elif self.workload != "program":  # (a user's program may take any key)
            allowed = FAMILY_DECODE_KEYS if family else ("mesh",)
            for key in DECODE_KEYS:
                if key not in allowed and getattr(self, key) != Point.model_fields[key].default:
                    raise ValueError(f"key '{key}': only applies to workload='decode'"
                                     + ("" if key not in FAMILY_DECODE_KEYS else " and blocks 'llama', 'moe'"))
        if self.workload != "program":
            self._family_checks(family)
        self._target_checks()
        return self

    def _target_checks(self) -> None:
        try:
            target = targets.parse(self.target)
        except ValueError as e:
            raise ValueError(f"key 'target': {e}") from None
        data, model = self.mesh_shape
        if target.platform == "cpu":
            if (self.workload in ("forward", "train") and self.mesh != "1x1"
                    and data * model != self.devices):
                raise ValueError(f"key 'mesh': {self.mesh} has {data * model} devices, devices={self.devices}")
            return
        missing = targets.missing_package(target)
        if missing:
            raise ValueError(f"key 'target': {missing}")
        if self.run:
            raise ValueError(f"key 'run': target {self.target!r} is compiled without its device here, "
                             "so nothing can run; set run = false")
        if self.devices != target.devices:
            raise ValueError(f"key 'devices': target {self.target!r} has {target.devices} devices, "
                             f"devices={self.devices}; leave devices out")
        if data * model != target.devices:
            raise ValueError(f"key 'mesh': {self.mesh} uses {data * model} of the {target.devices} devices "
                             f"of target {self.target!r}; did you mean mesh = '{target.devices}x1'?")

    def _family_checks(self, family: bool) -> None:
        moe = self.block == "moe"
        for key in (*FAMILY_KEYS, *MOE_KEYS):
            applies = moe if key in MOE_KEYS else family
            if not applies and getattr(self, key) != Point.model_fields[key].default:
                where = "block 'moe'" if key in MOE_KEYS else "blocks 'llama' and 'moe'"
                raise ValueError(f"key '{key}': only applies to {where} (block = {self.block!r})")
        if not family:
            return
        kv_heads = self.kv_heads or self.heads
        if self.heads % kv_heads:
            raise ValueError(f"key 'kv_heads': heads={self.heads} is not divisible by kv_heads={kv_heads}")
        if moe and self.top_k > self.experts:
            raise ValueError(f"key 'top_k': {self.top_k} is more than experts={self.experts}")
        data, model = self.mesh_shape
        if self.workload == "train" and data * model != self.devices:
            raise ValueError(f"key 'mesh': {self.mesh} has {data * model} devices, devices={self.devices}")
        # Each mesh axis must divide every dimension it shards (profiler/models/sharding.py RULES).
        sharded = (("batch", self.batch, "data"), ("hidden", self.hidden, "data"), ("heads", self.heads, "model"),
                   ("kv_heads", kv_heads, "model"), ("mlp", self.mlp or 4 * self.hidden, "model"),
                   ("vocab", self.vocab, "model"))
        for key, size, axis in sharded:
            if size % (data if axis == "data" else model):
                raise ValueError(f"key '{key}': {size} is not divisible by the {axis} axis "
                                 f"({data if axis == 'data' else model}) of mesh {self.mesh}")

    def _decode_checks(self) -> None:
        data, model = self.mesh_shape
        kv_heads = self.kv_heads or self.heads
        if self.mode == "scan_shared":
            raise ValueError("key 'mode': workload 'decode' supports 'loop' and 'scan'")
        if self.remat != "none":
            raise ValueError("key 'remat': workload 'decode' has no backward pass to rematerialise for")
        if self.seq != Point.model_fields["seq"].default:
            raise ValueError("key 'seq': workload 'decode' takes its prompt length from prompt_len")
        if self.heads % kv_heads:
            raise ValueError(f"key 'kv_heads': heads={self.heads} is not divisible by kv_heads={kv_heads}")
        if self.prompt_len >= self.max_len:
            raise ValueError(f"key 'prompt_len': {self.prompt_len} must be < max_len={self.max_len}")
        if self.prompt_len + self.gen_tokens - 1 > self.max_len:
            raise ValueError(f"key 'gen_tokens': prompt_len + gen_tokens - 1 = "
                             f"{self.prompt_len + self.gen_tokens - 1} exceeds max_len={self.max_len}")
        if data * model > self.devices:
            raise ValueError(f"key 'mesh': {self.mesh} needs {data * model} devices, devices={self.devices}")
        for key, size in (("heads", self.heads), ("kv_heads", kv_heads), ("vocab", self.vocab)):
            if size % model:
                raise ValueError(f"key '{key}': {size} is not divisible by the model axis ({model}) of mesh {self.mesh}")
        if self.batch % data:
            raise ValueError(f"key 'batch': {self.batch} is not divisible by the data axis ({data}) of mesh {self.mesh}")

    def config(self) -> dict[str, Any]:
        """The keys that describe this point, with their values (its `cfg_` columns): the
        workload, how it is measured (RUN_KEYS) and the model keys its programs are built
        from (WORKLOAD_KEYS; for workload 'program', those its factory takes). The other
        keys do not apply to the point: their columns are null."""
        if self.workload == "program":
            keys = {"program", *factory_keys(refs.load(self.program))}
        else:
            keys = set(WORKLOAD_KEYS[self.workload])
        if self.block in BLOCK_FAMILIES:
            keys |= set(family_keys(self.block, self.workload))
        if self.on_mesh and self.workload in ("forward", "train", "program"):
            keys.add("mesh")
        keys |= {"workload", *RUN_KEYS}
        return {**{k: v for k, v in self.model_dump().items() if k in keys}, **self.knobs}

    @property
    def on_mesh(self) -> bool:
        """Whether the point's programs are laid out on a mesh of its target's devices (a
        mesh other than 1x1, or a TPU or GPU target)."""
        return self.mesh != "1x1" or self.target != "cpu"

    @property
    def mesh_shape(self) -> tuple[int, int]:
        """(data, model) sizes of `mesh`."""
        data, model = self.mesh.split("x")
        return int(data), int(model)

    @property
    def id(self) -> str:
        """Stable id of the configuration: a resumed sweep knows what is done by it."""
        # Keys at their "off" value leave the id as it was before they existed: old folders
        # resume (anatomy off, no knobs, no JAX release named, target 'cpu').
        offs = (("anatomy", not self.anatomy), ("knobs", not self.knobs), ("jax", self.jax is None),
                ("flax", self.flax is None), ("target", self.target == "cpu"))
        exclude = {k for k, off in offs if off}
        canonical = json.dumps(self.model_dump(exclude=exclude), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def label(self) -> str:
        """Short human-readable description for progress lines."""
        if self.workload == "program":  # the keys its factory takes, and no others
            taken = {k: v for k, v in self.config().items() if k not in ("workload", "program", *RUN_KEYS)}
            return " ".join([self.program.rpartition(":")[2], *(f"{k}={v}" for k, v in taken.items())])
        what = " ".join(filter(None, (self.workload, self.mode, self.block)))
        text = f"{what} L={self.layers} H={self.hidden}"
        if self.workload == "decode":
            text += f" cache={self.kv_cache} mesh={self.mesh}"
        elif self.block in BLOCK_FAMILIES:
            text += f" remat={self.remat} mesh={self.mesh}"
        if self.jax:
            text += f" jax={self.jax}" + (f" flax={self.flax}" if self.flax else "")
        if self.target != "cpu":
            text += f" target={self.target}"
        return text


class Sweep(BaseModel):
    """How a sweep runs. These keys are scalars, never grid axes."""

    model_config = _STRICT

    name: str = Field(min_length=1, description="Name of the sweep; names the results folder and the report.")
    repeats: int = Field(3, ge=1, description="Measurements of each point, each in a fresh process.")
    timeout_s: float | None = Field(
        None, gt=0, description="Wall-time limit of one measuring process, in seconds; a process "
        "past it is killed and its point recorded with run_status 'timeout'. None = no limit.")
    max_rss_gb: float | None = Field(
        None, gt=0, description="Limit on the resident memory of one measuring process (and its "
        "children), in GiB; a process past it is killed and recorded with run_status 'oom'. "
        "None = no limit.")
    max_points: int = Field(
        500, ge=1, description="Guard against a mistyped grid: a spec with more points than this "
        "is refused unless the command line says --yes.")


def remat_names() -> tuple[str, ...]:
    """'none', 'full', and the policies of jax.checkpoint_policies usable as they are
    (factories that need arguments, like save_only_these_names, are left out)."""
    import jax

    policies = jax.checkpoint_policies
    usable = sorted(
        name for name in dir(policies)
        if not name.startswith("_")
        and list(inspect.signature(getattr(policies, name)).parameters)[:1] in (["prim"], ["_"])
    )
    return ("none", "full", *usable)


DECODE_KEYS = ("prompt_len", "max_len", "kv_heads", "vocab", "mesh", "donate", "kv_cache", "gen_tokens")
BLOCK_FAMILIES = ("llama", "moe")
"""Built-in blocks named by `block` (profiler/models/llama.py, profiler/models/moe.py)."""
FAMILY_DECODE_KEYS = ("kv_heads", "vocab", "mesh")
"""Decode keys that the block families use too (mesh: workload 'train')."""
FAMILY_KEYS = ("preset", "mlp", "weight_dtype")
MOE_KEYS = ("experts", "top_k", "capacity_factor")
POINT_KEYS: tuple[str, ...] = tuple(k for k in Point.model_fields if k != "knobs")
"""The keys a spec writes (knobs are written as keys of their own, factory_knobs)."""
RESERVED_KNOBS = ("phase",)
"""Parameter names that cannot be knobs: their cfg_ column is another's (cfg_phase)."""
SWEEP_KEYS: tuple[str, ...] = tuple(Sweep.model_fields)
LIMIT_KEYS: tuple[str, ...] = ("timeout_s", "max_rss_gb", "max_points")
"""Sweep keys that bound how a sweep runs, not what it measures: a resumed sweep may change them."""
RUN_KEYS: tuple[str, ...] = ("run", "steps", "devices", "anatomy", "target", "jax", "flax")
"""Point keys that set how a point is measured, not what is compiled."""
MODEL_KEYS: tuple[str, ...] = tuple(k for k in POINT_KEYS if k not in ("workload", "program", *RUN_KEYS))
"""Point keys that describe what is compiled: what a block's constructor or a program
factory may take."""
_STACK_KEYS = ("block", "mode", "layers", "hidden", "heads", "batch", "seq", "dtype", "unroll", "remat", "api")
WORKLOAD_KEYS: dict[str, tuple[str, ...]] = {
    "forward": _STACK_KEYS,
    "train": _STACK_KEYS,
    "decode": ("mode", "layers", "hidden", "heads", "batch", "dtype", "unroll", *DECODE_KEYS),
    "program": (),  # the model keys its factory takes: factory_keys
}
"""The model keys each workload builds its programs from; the others do not apply to its
points (null cfg_ columns). A new model key belongs to the workloads that read it."""


def family_keys(block: str, workload: str) -> tuple[str, ...]:
    """The model keys a block family reads beyond the stack's (WORKLOAD_KEYS)."""
    return (*FAMILY_KEYS, "kv_heads", "vocab", *(MOE_KEYS if block == "moe" else ()),
            *(("mesh",) if workload == "train" else ()))


def factory_keys(factory: Any) -> tuple[str, ...]:
    """The model keys a program factory takes (all of them if it takes **kwargs). A
    parameter named like a key that is not a model key (how the point is measured, a sweep
    setting) is a ValueError naming it: the factory would silently get the measurement's
    value instead of its own."""
    params = inspect.signature(factory).parameters.values()
    named = [p.name for p in params if p.kind not in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for name in named:
        if name in POINT_KEYS + SWEEP_KEYS and name not in MODEL_KEYS:
            raise ValueError(f"takes a parameter {name!r}, named like the spec key {name!r}, which sets how "
                             "the point is measured, not what is compiled; rename the parameter")
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return MODEL_KEYS
    return tuple(k for k in MODEL_KEYS if k in named)


def factory_knobs(factory: Any) -> tuple[str, ...]:
    """The factory's own parameters that no key names (its knobs): named keyword
    parameters that are not spec keys. A factory's **kwargs takes no knobs (a misspelt
    key would vanish into it)."""
    params = inspect.signature(factory).parameters.values()
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                 and p.name not in POINT_KEYS + SWEEP_KEYS + ("knobs",))


def factory_defaults(factory: Any, table: dict[str, Any]) -> dict[str, Any]:
    """The defaults of the factory's model-key parameters that `table` does not set."""
    params = inspect.signature(factory).parameters
    return {k: params[k].default for k in factory_keys(factory)
            if k in params and k not in table and params[k].default is not inspect.Parameter.empty}
