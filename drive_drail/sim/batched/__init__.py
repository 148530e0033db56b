"""A batched, vectorised re-implementation of highway-env 1.12.1 for the highway scenarios.

B scenes x M objects live in torch arrays (CPU float64 by default, CUDA float32); one
policy step runs highway-env's own models for every object of every scene at once:

- ``road.py``       the lane graph as arrays (straight roads, merge-v0's ramp with its sine lane)
- ``vehicles.py``   the state arrays and slot layout (ego, traffic, obstacles)
- ``physics.py``    the kinematic bicycle model (``Vehicle.step``)
- ``behavior.py``   IDM, MOBIL and the lane controller of ``IDMVehicle`` / ``ControlledVehicle``
- ``collision.py``  oriented-box collisions (SAT, impacts) and off-road
- ``spawn.py``      initial scenes drawn like each highway-env environment's reset
- ``env.py``        :class:`BatchedHighwayEnv`: the highway adapter's episode logic and spec observation
- ``scene_exchange.py``  import / export of live highway-env scenes
- ``vec_env.py``    gymnasium ``VectorEnv`` and SB3 ``VecEnv`` interfaces, :func:`make_batched_vec_env`

Importing this package imports torch but not highway-env; ``scene_exchange`` and the
tests use highway-env as the reference.
"""
