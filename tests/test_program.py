"""random_like: the arguments a run point runs on. Large leaves copy from one pool of
normal draws (profiler/models/program.py): they must still look like independent draws where a
step could tell, and be the same for the same seed."""

import jax
import jax.numpy as jnp
import numpy as np

from profiler.models.program import _DRAWN, _POOL, random_like


def test_large_leaves_are_normal_at_the_scale_and_no_two_layers_alike():
    abstract = {"stacked": jax.ShapeDtypeStruct((6, 512, 512), jnp.float32),  # 1.5 M values: past the pool
                "other": jax.ShapeDtypeStruct((512, 512), jnp.float32),
                "half": jax.ShapeDtypeStruct((1024, 1024), jnp.bfloat16),
                "small": jax.ShapeDtypeStruct((8, 8), jnp.float32),
                "ids": jax.ShapeDtypeStruct((4,), jnp.int32)}
    assert abstract["stacked"].size > _POOL and abstract["small"].size <= _DRAWN
    values = {k: np.asarray(v, np.float32) for k, v in random_like(abstract, seed=3, scale=0.02).items()}
    for name in ("stacked", "other", "half", "small"):
        assert abs(values[name].std() - 0.02) < 0.02 * (0.02 if values[name].size > 10_000 else 0.5), name
        assert abs(values[name].mean()) < 0.002, name
    layers = values["stacked"]
    assert len({layers[i].tobytes() for i in range(len(layers))}) == len(layers)
    assert not np.array_equal(values["other"], layers[0])
    assert random_like(abstract, seed=3)["half"].dtype == jnp.bfloat16
    assert (values["ids"] == 0).all()
    again = random_like(abstract, seed=3, scale=0.02)
    assert all(np.array_equal(np.asarray(again[k], np.float32), values[k]) for k in values)
    assert not np.array_equal(np.asarray(random_like(abstract, seed=4)["other"]), values["other"])
