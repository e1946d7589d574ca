"""The anatomy's taxonomy: the components of each stage, what each means, and the row
column each goes to (column, component_docs; docs/anatomy.md). Tables only: record.py and
the report read it without profiling anything."""

from __future__ import annotations

# The compile-stage taxonomy: (component, pattern on the event name, doc). First match
# wins; an event that matches nothing inherits the component of its enclosing event.
# CPU names were read from jaxlib 0.10.2's own traces on this machine. The GPU names
# come from XLA's sources (TraceMe in xla/service/gpu/gpu_compiler.cc:
# GpuCompiler::OptimizeHloModule, GpuCompiler::CompileToBackendResult; llvm_gpu_backend:
# CompileSingleModule; nvptx_compiler.cc: PTX->CUBIN; autotuning/autotuner_compile_util.cc:
# AutotunerCompile; the autotuners run as passes named *autotuner*/*algorithm-picker*) and
# were not checked on a GPU here (docs/anatomy.md). The TPU names were read from libtpu
# 0.0.42.1's traces of deviceless compiles on this machine (docs/tpu.md).
COMPILE_RULES: tuple[tuple[str, str, str], ...] = (
    ("llo", r"^XLA::TPU (lowering and optimization|code generat)|^LSRAv2 |^DCE$|^LLO",
     "TPU: the fusions lowered to LLO, the TPU's low-level IR, its optimisations (DCE, ...), register allocation "
     "(LSRAv2) and code generation."),
    ("autotuning", r"(?i)autotun|algorithm.?picker|conv-algorithm|gemm-algorithm",
     "GPU: choosing kernels and their configurations by timing them (gemm, fusion, convolution autotuners)."),
    ("ptx_compilation", r"^PTX->CUBIN$|[Pp][Tt][Xx][Aa][Ss]|CompileGpuAsm|nvlink|LinkGpuAsm|PtxCompile",
     "GPU: PTX to device code (ptxas or the in-process PTX compiler) and linking."),
    ("hlo_verifier", r"^(RunInvariantCheckers|hlo-verifier|cpu-verifier|gpu-verifier)$",
     "The HLO verifier XLA runs after passes (invariant checkers)."),
    ("layout_assignment", r"^((cpu|gpu)-)?layout[-_]assignment$",
     "The layout-assignment pass itself."),
    ("copy_insertion", r"copy[-_]insertion$",
     "The copy-insertion pass itself (adds the copies that make buffer aliasing safe; its alias analysis is whole-program)."),
    ("hlo_fusion", r"^[a-z0-9_\-]*fusion[a-z0-9_\-]*$",
     "HLO fusion decisions: the fusion passes (fusion, priority-fusion, multi-output, horizontal)."),
    ("hlo_passes_after_layout",
     r"^HLO passes after|^XLA::TPU HLO PostOptimizationPipeline$|^simplification after layout|^GpuCompiler::OptimizeHloPostLayoutAssignment$|^post-layout",
     "Other HLO passes of the pipelines after layout assignment (simplification after layout, scheduling pipelines)."),
    ("hlo_passes_before_layout",
     r"^HLO passes through layout|^XLA::TPU HLO optimization$|^GpuCompiler::(OptimizeHloModule|RunHloPasses|RunPreSPMDPartitionerPasses)$",
     "Other HLO passes of the pipeline that runs layout assignment (simplification, expanders, dot decomposition, SPMD on GPU)."),
    ("kernel_emission",
     r"^XLA::TPU emitting for |^FusionCompiler::|^IrEmitter|^EmitLlvmIr|^GpuCompiler::CompileModuleToLlvmIr|^EmitFusion|^KernelEmitter|Emitter::Emit(?!EntryComputation)",
     "Fusion/kernel code generation: HLO fusions to MLIR to LLVM IR (the emitters and their MLIR passes); TPU: "
     "'XLA::TPU emitting for <fusion>', one event per fusion."),
    ("thunk_emission", r"^ThunkEmitter::|^ThunkSequence|EmitThunk|^Thunk",
     "Emitting the thunks, the runtime's sequence of operations (and, on CPU, collecting the kernels they call)."),
    ("llvm", r"^(JitCompiler::|Codegen$|TaskDispatcher::|SplitModule$|CpuCompiler::CloneAsThreadSafeModule$)"
     r"|^CompileSingleModule$|^(NVPTX|AMDGPU)Compiler::CompileTargetBinary|^GpuCompiler::CompileAndLink",
     "LLVM: optimising the emitted modules and generating machine code (CPU: the JIT's per-module tasks; GPU: LLVM to PTX)."),
    ("scheduling_buffers",
     r"^CpuCompiler::(RunBackend|CompileCpuExecutable)$|^GpuCompiler::(RunBackend|CompileToBackendResult)$"
     r"|^TpuCompiler::Compile$|^XLA::TPU run backend$"
     r"|[Bb]uffer.?[Aa]ssign|AssignBuffers|[Ss]chedul",
     "Self time of the backend compile outside the events above: HLO scheduling, buffer assignment and assembling the "
     "executable (jaxlib 0.10.2 emits no finer events for them on CPU)."),
    ("client", r"^backend_compile_and_load$|Client::Compile|^PjRt|^CompileAndLoad|^Compile$",
     "The client's entry points outside the backend: StableHLO to HLO conversion, compile options, loading the executable."),
)
HLO_PASSES_OTHER = ("hlo_passes_other", "HLO pass pipelines outside the main two, run by the client or the "
                    "compiler directly (sharding removal, HLO normalisation, dot-library rewrites, sub-byte packing).")
OTHER = ("other", "Named events that match no rule and sit in no event that does.")
UNATTRIBUTED = "unattributed"

# Python stages: component of a function by the path of its module.
PYTHON_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("flax", "Flax: module machinery (setup, scopes, variable creation, nn.scan/remat transforms)."),
    ("jax", "JAX (jax, jaxlib but the MLIR bindings): primitive binding, tracing, lowering rules."),
    ("mlir", "The MLIR Python bindings (jaxlib.mlir): building StableHLO operations."),
    ("user", "The user's code: the block, the model, the program (here: the harness's workloads too)."),
    ("python", "The rest of Python: the standard library, other packages (NumPy, ...), the interpreter."),
)
STAGES = ("trace", "lower", "compile")
DETAIL_KEY = "_anatomy_detail"
"""Key of a measured row's dict (worker → runner) that carries its detail rows; the runner
takes it out before the row becomes a Record and stores the detail beside the rows."""
COMPILE_COMPONENTS: tuple[str, ...] = (
    *dict.fromkeys(c for c, _, _ in COMPILE_RULES), HLO_PASSES_OTHER[0], OTHER[0])


def column(stage: str, component: str) -> str:
    """The row column of a component: `time_xla_<c>_s` for the compile, `time_<stage>_<c>_s` else."""
    return f"time_xla_{component}_s" if stage == "compile" else f"time_{stage}_{component}_s"


def component_docs() -> list[tuple[str, str, str]]:
    """(column, stage, meaning) of every component column, the `unattributed` ones included."""
    docs = []
    for stage in ("trace", "lower"):
        docs += [(column(stage, c), stage, doc) for c, doc in PYTHON_COMPONENTS]
        docs.append((column(stage, UNATTRIBUTED), stage, "Time of the stage no profiled Python function accounts for (profiler start-up and the gaps between calls)."))
    seen = set()
    for c, _, doc in COMPILE_RULES:
        if c not in seen:
            seen.add(c)
            docs.append((column("compile", c), "compile", doc))
    docs.append((column("compile", HLO_PASSES_OTHER[0]), "compile", HLO_PASSES_OTHER[1]))
    docs.append((column("compile", OTHER[0]), "compile", OTHER[1]))
    docs.append((column("compile", UNATTRIBUTED), "compile", "Wall time of the compile no XLA event covers (JAX's Python around the backend: cache keys, compile options)."))
    return docs
