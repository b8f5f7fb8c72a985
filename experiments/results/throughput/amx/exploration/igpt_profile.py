"""Throwaway device probe: per-op profile of the image-GPT network's train step, fp32 vs bf16."""
import collections, sys, tempfile, time, types
# profile_step's parsing helpers without the loop (whose data dependencies this machine lacks)
sys.modules["experiments.benchmark_speed"] = types.SimpleNamespace(DEFAULT_CONFIGS=(), CompiledStep=None, load_entry=None)
import genfam.loop  # noqa
sys.modules.setdefault("genfam.loop.sharding", types.ModuleType("s")); sys.modules.setdefault("genfam.loop.train", types.ModuleType("t"))
import jax, jax.numpy as jnp, optax
from experiments.profile_step import parse_hlo, category, source, trace_events
from genfam.nets.transformer import Transformer

def build(dtype, depth=4, batch=16):
  net = Transformer(num_tokens=256, seq_len=784, width=128, depth=depth, num_heads=4, dtype=dtype, query_block=196)
  tokens = jax.random.randint(jax.random.PRNGKey(0), (batch, 784), 0, 256)
  params = net.init(jax.random.PRNGKey(1), tokens)
  opt = optax.adam(1e-3)
  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(net.apply(p, tokens), tokens).mean()
  def step(state):
    p, o = state
    l, g = jax.value_and_grad(loss)(p)
    u, o = opt.update(g, o, p)
    return (optax.apply_updates(p, u), o), l
  return jax.jit(step), (params, opt.init(params))

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import canon_dot
for d in sys.argv[1:]:
  name, _, mode = d.partition("+")
  if mode == "canon":
    canon_dot.patch_flax()
  step, state = build(jnp.dtype(name))
  compiled = step.lower(state).compile()
  text = compiled.as_text()
  instructions, contents = parse_hlo(text)
  for _ in range(2):
    state, l = step(state)
  jax.block_until_ready(state)
  steps = 3
  with tempfile.TemporaryDirectory() as tdir:
    with jax.profiler.trace(tdir, create_perfetto_trace=True):
      t = time.perf_counter()
      for _ in range(steps):
        state, l = step(state)
      jax.block_until_ready(state)
      wall = (time.perf_counter() - t) / steps
    events = trace_events(tdir)
  by_cat, by_op = collections.Counter(), collections.Counter()
  for e in events:
    c = category(e["name"], instructions, contents)
    if c is not None:
      by_cat[c] += e.get("dur", 0.0) / 1e3 / steps
      by_op[e["name"]] += e.get("dur", 0.0) / 1e3 / steps
  print(f"\n== {d}: {wall*1e3:.0f} ms/step traced; op ms by category: " +
        ", ".join(f"{k} {v:.0f}" for k, v in by_cat.most_common()), flush=True)
  lines = {}
  for line in text.splitlines():
    s = line.strip()
    if s.startswith("%") or s.startswith("ROOT"):
      lines[s.split(" = ")[0].replace("ROOT ", "").lstrip("%")] = s
  for name, ms in by_op.most_common(10):
    opcode, called, _ = instructions[name]
    inner = [lines.get(i, "")[:260] for i in [name] + list(contents.get(called, ())) if instructions[i][0] in ("dot", "convolution", "transpose", "copy")][:3]
    print(f"{ms:7.1f} ms  {category(name, instructions, contents)}: {source(name, instructions, contents)} | {lines.get(name, '')[:200]}")
    for s in inner:
      print("          ", s)
  with open(f"{sys.argv[0].rsplit('/', 1)[0]}/../out_{d}.hlo" if False else f"/tmp/igpt_{name}_{mode}.hlo", "w") as f:
    f.write(text)
