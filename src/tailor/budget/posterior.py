"""A NumPyro model's posterior as compiled JAX functions of a flat parameter vector: the
potential and its gradient for L-BFGS and NUTS, the Laplace approximation at the mode, and
the way back from the unconstrained space to parameters.

NumPyro's own initialisation runs the model op by op outside of compilation, which costs
seconds per fit; here the model is only traced abstractly, once, to learn its sites, and
everything that runs is compiled, once per model structure and input shape.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

MIN_CURVATURE = 1e-2
"""Floor of the Hessian's eigenvalues in the Laplace approximation: a direction the data and
priors leave flat gets a standard deviation of 10 on the unconstrained scale (already a
factor of e^10 on a positive parameter), not one that overflows."""


def load_jax() -> tuple[Any, Any, Any]:
    """JAX, jax.numpy and NumPyro, set up for the media-mix model (64-bit floats)."""
    try:
        import jax
        import jax.numpy as jnp
        import numpyro
    except ImportError:
        raise ImportError(
            "the media-mix model needs NumPyro and JAX, which tailor installs: reinstall "
            "tailor (pip install tailor) in this environment"
        ) from None
    numpyro.enable_x64()
    # One XLA device per core lets chains run in parallel instead of in one vectorized
    # program that moves at its slowest chain's pace; it only takes effect before JAX's first
    # computation in the process.
    numpyro.set_host_device_count(os.cpu_count() or 1)
    return jax, jnp, numpyro


COMPILED: dict[tuple, Compiled] = {}


def compiled(
    structure: Hashable, model: Callable[[], Any], inputs: dict[str, np.ndarray]
) -> Compiled:
    """The compiled posterior of a model ``structure`` (anything that tells two models
    apart) and this input shape, kept for re-fits; ``model()`` builds the NumPyro model
    when it is not compiled yet."""
    key = (structure, tuple((k, v.shape) for k, v in sorted(inputs.items())))
    if key not in COMPILED:
        if len(COMPILED) >= 16:
            COMPILED.pop(next(iter(COMPILED)))
        COMPILED[key] = Compiled(model(), inputs)
    return COMPILED[key]


class Compiled:
    """The model's potential (negative log posterior in the unconstrained space, with the
    Jacobian) as one compiled function of a flat vector and the inputs, and the way back
    to parameters.

    NumPyro's own initialisation runs the model op by op outside of compilation, which
    costs seconds per fit; here the model is only traced abstractly, once, to learn its
    sites, and everything that runs is compiled, once per model structure and shape."""

    def __init__(self, model: Any, inputs: dict[str, np.ndarray]) -> None:
        jax, jnp, _numpyro = load_jax()
        from jax.flatten_util import ravel_pytree
        from numpyro.distributions import biject_to
        from numpyro.handlers import seed, trace
        from numpyro.infer.util import potential_energy, transform_fn

        sites: dict[str, Any] = {}

        def record(inputs: dict[str, Any]) -> int:
            traced = trace(seed(model, jax.random.PRNGKey(0))).get_trace(inputs)
            for name, site in traced.items():
                if site["type"] == "sample" and not site["is_observed"]:
                    sites[name] = site
            return 0

        jax.make_jaxpr(record)(inputs)  # abstract: nothing is computed or compiled
        self.transforms = {name: biject_to(site["fn"].support) for name, site in sites.items()}
        shapes = {
            name: jnp.zeros(self.transforms[name].inverse_shape(site["fn"].shape()))
            for name, site in sites.items()
        }
        flat, self.unravel = ravel_pytree(shapes)
        self.size = len(flat)

        def potential(z: Any, inputs: dict[str, Any]) -> Any:
            return potential_energy(model, (inputs,), {}, self.unravel(z))

        self.potential = potential
        self.value_and_grad = jax.jit(jax.value_and_grad(potential))
        self._constrain = jax.jit(
            jax.vmap(lambda z: transform_fn(self.transforms, self.unravel(z)))
        )
        self._unconstrain = lambda params: ravel_pytree(
            transform_fn(self.transforms, params, invert=True)
        )[0]
        self.jnp = jnp

    def bound(self, inputs: dict[str, np.ndarray]) -> Any:
        """The potential of these inputs as a function of the parameters only (for NUTS)."""
        arrays = {k: self.jnp.asarray(v) for k, v in inputs.items()}
        return lambda z: self.potential(z, arrays)

    def start(self, mode: dict[str, np.ndarray] | None) -> np.ndarray:
        """Where the optimizer starts: an earlier fit's mode, or the unconstrained origin
        (alpha = 0.5, positive parameters = 1, the rest 0)."""
        if mode is None:
            return np.zeros(self.size)
        return np.asarray(self._unconstrain({k: self.jnp.asarray(v) for k, v in mode.items()}))

    def laplace(
        self, start: np.ndarray, inputs: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, Any, np.ndarray]:
        """The mode (L-BFGS with exact gradients) and a square root of the covariance of the
        Laplace approximation there (the inverse Hessian, by central differences of the
        exact gradient: a second compiled program would cost more than its 2n gradients)."""
        from scipy.optimize import minimize

        arrays = {k: self.jnp.asarray(v) for k, v in inputs.items()}

        def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = self.value_and_grad(self.jnp.asarray(z), arrays)
            return float(value), np.asarray(grad)

        result = minimize(
            objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-7}
        )
        step = 1e-5 * np.maximum(1.0, np.abs(result.x))
        hessian = np.empty((self.size, self.size))
        for i in range(self.size):
            up, down = result.x.copy(), result.x.copy()
            up[i] += step[i]
            down[i] -= step[i]
            hessian[:, i] = (objective(up)[1] - objective(down)[1]) / (2 * step[i])
        eigenvalues, vectors = np.linalg.eigh((hessian + hessian.T) / 2)
        result.non_positive_curvature = int((eigenvalues <= 0).sum())
        # a direction without curvature gets a wide but finite spread, not an infinite one
        cov_root = vectors / np.sqrt(np.maximum(eigenvalues, MIN_CURVATURE))
        return result.x, result, cov_root

    def constrain(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Parameters for each row of ``z`` (``(S, size)``)."""
        return {k: np.asarray(v) for k, v in self._constrain(self.jnp.asarray(z)).items()}
