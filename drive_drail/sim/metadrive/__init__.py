"""The MetaDrive adapter: a scenario's MetaDrive environment behind the spec interface.

Runs MetaDrive 0.4.3 headless and state-only (``use_render=False``, no image
observation); :mod:`drive_drail.sim.metadrive.assets` makes that work without MetaDrive's
render assets and without its asset download.

Frames. MetaDrive's world frame is right-handed: ``vehicle.position`` is Panda3D's (x, y)
unchanged, ``heading_theta`` is counter-clockwise from +x in rad, positive steering turns
left, and the first block of every procedural (PG) map runs along +x. So it IS the spec
frame; no mirroring. Velocities are the spec's convention (as in the highway adapter and
the converter): ``speed * [cos(heading), sin(heading)]`` with the signed speed
``speed = velocity . [cos(heading), sin(heading)]`` of the physics body.

Lanes. MetaDrive lanes are ``(from_node, to_node, id)``; on every road segment id 0 is
the LEFTMOST lane in the driving direction (checked on the first block: lane 0 lies at
the largest y), which is the spec's convention, so ``lane_index = id`` unchanged.
``lane_count`` is the number of lanes of that segment (an on-ramp's acceleration lane
counts, as in highway-env). ``lane_offset_m`` is measured geometrically, + = left, from
the lane centre at the vehicle's longitudinal coordinate (MetaDrive's own ``lateral`` is
+ = right); ``lane_heading_rad = lane.heading_theta_at(longitudinal)``. A vehicle's lane
is its navigation's current lane (the ego's lies on its route).

Actions (:func:`physical_to_metadrive`, :func:`metadrive_to_physical`). MetaDrive's
action is ``[steering, throttle_brake]`` in [-1, 1]^2 (``BaseVehicle._set_action``):

- the front wheels turn by ``delta_md = steering * max_steering`` (the vehicle config's
  ``max_steering``, in degrees, 40 for the default car), + = left. The spec's ``steer_rad`` is
  the front-wheel angle of highway-env's bicycle model, whose reference point is the centre of
  a car of wheelbase = its length L: yaw rate ``v sin(beta) / (L / 2)`` with
  ``beta = arctan(tan(steer_rad) / 2)``. MetaDrive's car turns on its real, shorter wheelbase
  ``W`` (front + rear, 2.47 m against L = 4.52 m), yaw rate ``v tan(delta_md) / W``, so the same
  wheel angle turns it ~1.8x faster. The map equates the two yaw rates:
  ``tan(delta_md) = (2 W / L) sin(beta)`` (:func:`spec_to_wheel_rad`), and back
  (:func:`wheel_to_spec_rad`). Measured, the car then turns at 0.95-0.98 of the spec's rate at
  5-20 m/s (the tyres' understeer), so logs converted with the spec's model recover the
  applied steering;
- ``throttle_brake > 0`` applies an engine force ``throttle_brake * max_engine_force`` [N]
  at each of the 4 wheels: ``accel = throttle_brake * 4 * max_engine_force / mass``
  (2.73 to 3.09 m/s^2 at full throttle for the default car, whose engine force is drawn
  in [750, 850] N per episode); the engine cuts out above ``max_speed_km_h`` (80 km/h);
- ``throttle_brake < 0`` sets Bullet's brake, a per-physics-step impulse limit of
  ``|throttle_brake| * max_brake_force`` [N s] at each wheel:
  ``accel = throttle_brake * 4 * max_brake_force / (mass * physics_world_step_size)``
  (14.5 to 33 m/s^2 nominal at full brake, brake force drawn in [80, 180] N s; the
  spec's -5 m/s^2 floor is reached near -0.3, well inside the tyres' grip); the car
  brakes to a standstill and never reverses;
- ``throttle_brake == 0`` exactly coasts with MetaDrive's rolling-resistance brake 2.0:
  ``-4 * 2 / (mass * dt)``, -0.36 m/s^2 at 50 Hz. The forward map therefore sends
  ``accel_mps2 <= 0`` to the brake branch (``accel == 0`` -> a vanishing brake, not to
  the coasting value).

These are the ego's own numbers, read from its config every episode (:class:`VehicleLimits`);
the test checks the map against measured accelerations and yaw rates. Spec actions
outside the car's range are clipped to it. Actions are held for
``decision_repeat = simulation_frequency_hz // policy_frequency_hz`` physics steps of
``physics_world_step_size = 1 / simulation_frequency_hz`` s.

Scene. The ego, every other vehicle MetaDrive has spawned (active traffic, traffic
parked until its block is triggered, stalled vehicles) and every static traffic object
(cones, warnings, barriers), as vehicles; :func:`drive_drail.spec.observe_batch` applies
its own radius. One helper, :meth:`MetaDriveAdapter.frame_rows`, extracts these states
for both :meth:`MetaDriveAdapter.scene` and the recorder, so logs and rollouts hold the
same float64 numbers. ``expert`` is True for the ego and for traffic that is driving
(triggered), False for parked traffic, stalled vehicles and objects.

Outcomes. ``crashed`` = MetaDrive's ``crash`` (vehicle, object, building, sidewalk or
human), ``offroad`` = ``out_of_road`` (which in MetaDrive includes crossing a solid
line), ``success`` from ``arrive_dest`` or the task's own criterion, see
:class:`MetaDriveAdapter`.
"""

from drive_drail.sim.metadrive.actions import (
    VehicleLimits,
    metadrive_to_physical,
    metadrive_to_spec_unit,
    physical_to_metadrive,
    spec_to_wheel_rad,
    spec_unit_to_metadrive,
    wheel_to_spec_rad,
)
from drive_drail.sim.metadrive.adapter import MetaDriveAdapter, check_engine_free, make_env
from drive_drail.sim.metadrive.config import ADAPTER_KEYS, ENV_IDS, RESERVED_CONFIG_KEYS, NullObservation, metadrive_config
from drive_drail.sim.metadrive.lanes import lane_frame

__all__ = [
    "ADAPTER_KEYS", "ENV_IDS", "RESERVED_CONFIG_KEYS", "MetaDriveAdapter", "NullObservation", "VehicleLimits",
    "check_engine_free", "lane_frame", "make_env", "metadrive_config", "metadrive_to_physical",
    "metadrive_to_spec_unit", "physical_to_metadrive", "spec_to_wheel_rad", "spec_unit_to_metadrive", "wheel_to_spec_rad",
]
