"""The batched highway environment: B scenes stepped at once, with the highway adapter's episode logic.

One :class:`BatchedHighwayEnv` runs B copies of one scenario split. Per policy step it
does exactly what ``drive_drail.sim.highway.HighwayAdapter.step`` does to highway-env,
for every scene at once:

1. map each action in [-1, 1]^2 to ``[accel_mps2, steer_rad]`` (``spec.action_to_physical``),
   mirror the steering into highway-env's frame and pass it through ``ContinuousAction``'s
   linear map (the same float operations, so the ego gets the same numbers);
2. run ``frames_per_action`` simulation frames (``AbstractEnv._simulate``), each:
   ``Road.act`` (:func:`behavior.decide`), ``Road.step`` (:func:`physics.bicycle_step`
   then :func:`collision.handle_collisions`);
3. terminated and success: the task rules of :mod:`drive_drail.tasks` on the [B] arrays; truncated = time limit;
   info = the adapter's keys (``sim/base.py``) plus its extras;
4. observation: ``spec.observe_batch`` on a :class:`spec.SceneBatch` built from the arrays
   in the spec frame (y, vy, heading mirrored; lane fields of the ego's lane);
5. auto-reset of finished scenes (same-step: the returned observation is the new
   episode's first; the last one is returned separately).

Episode seeds follow ``drive_drail.train.envs.DeclaredSeeds``: episode n of scene b
plays ``seeds[(offset + n * B + b) % len(seeds)]`` of the split. Initial scenes come from
:mod:`drive_drail.sim.batched.spawn`, drawn once for all the split's seeds at
construction (a reset is then a gather), or from highway-env itself through
:mod:`drive_drail.sim.batched.scene_exchange`.

Frames run in the compiled CPU kernel (:mod:`drive_drail.sim.batched.kernel`) where it can
(float64 on a CPU with numba; ``kernel="auto"``), else as whole-array torch ops
(:func:`simulate_frame`); both are held to highway-env by the differential tests.

Precision: float64 by default on CPU (bit-level parity with highway-env's numpy), float32
by default on CUDA.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from drive_drail import spec, tasks
from drive_drail.scenario import Scenario, ScenarioError
from drive_drail.sim import base
from drive_drail.sim.batched import behavior, collision, physics
from drive_drail.sim.batched import kernel as cpu_kernel
from drive_drail.sim.batched.road import LaneTable
from drive_drail.sim.batched.spawn import SceneFamily, scene_family
from drive_drail.sim.batched.vehicles import VehicleState

def _np(t: torch.Tensor) -> np.ndarray:
    """A NumPy copy (``Tensor.numpy()`` of a CPU tensor would share, and later change, its memory)."""
    return t.detach().to("cpu").numpy().copy()


# --------------------------------------------------------------------------------------
# The simulation core (no episode logic)
# --------------------------------------------------------------------------------------


def simulate_frame(st: VehicleState, lanes: LaneTable, dt_s: float) -> None:
    """One highway-env frame for every scene: ``Road.act()`` then ``Road.step(dt)``."""
    behavior.decide(st, lanes)
    physics.bicycle_step(st, lanes, dt_s)
    collision.handle_collisions(st, dt_s)


KERNELS = ("auto", "numba", "torch")
"""How frames are stepped: ``numba`` the compiled CPU kernel (:mod:`kernel`), ``torch`` whole-array
ops (:func:`simulate_frame`, any device), ``auto`` the kernel where it can run (float64 on a CPU with numba)."""


def lmap(v: np.ndarray, x: tuple[float, float], y: tuple[float, float]) -> np.ndarray:
    """highway-env ``utils.lmap`` (same float operations)."""
    return y[0] + (v - x[0]) * (y[1] - y[0]) / (x[1] - x[0])


def ego_action_highway(action_unit: np.ndarray, speed_mps: np.ndarray, hold_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Policy actions ``[B, 2]`` in [-1, 1] -> (spec physical ``[B, 2]``, highway-env ``[B, 2]`` accel/steer).

    Exactly the adapter's path: ``action_to_physical``, the no-reverse limit for the ego's
    ``speed_mps [B]`` over the ``hold_s`` policy period, mirror the steering, ``physical_to_linear_unit``,
    then ``ContinuousAction.get_action`` (clip to [-1, 1] and ``lmap`` to the ranges).
    """
    physical = spec.action_to_physical(np.asarray(action_unit, dtype=np.float64).reshape(-1, spec.ACTION_DIM))
    physical[:, 0] = spec.no_reverse_accel_mps2(physical[:, 0], speed_mps, hold_s)
    hw_unit = np.clip(spec.physical_to_linear_unit(np.stack([physical[:, 0], -physical[:, 1]], axis=1)), -1, 1)
    accel = lmap(hw_unit[:, 0], (-1, 1), spec.ACCEL_RANGE_MPS2)
    steer = lmap(hw_unit[:, 1], (-1, 1), spec.STEER_RANGE_RAD)
    return physical, np.stack([accel, steer], axis=1)


def set_ego_action(st: VehicleState, hw_action: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    """``Vehicle.act({"acceleration", "steering"})`` on the ego slot (highway-env frame), where ``mask`` ``[B]``."""
    take = ~st.is_idm[:, 0] if mask is None else mask & ~st.is_idm[:, 0]
    st.accel_mps2[:, 0] = torch.where(take, hw_action[:, 0], st.accel_mps2[:, 0])
    st.steer_rad[:, 0] = torch.where(take, hw_action[:, 1], st.steer_rad[:, 0])


def make_ego_idm(st: VehicleState, lanes: LaneTable, scenes: torch.Tensor, lane_change: bool) -> None:
    """Turn the ego of ``scenes`` into an ``IDMVehicle`` (the IDM expert of the outcome tests).

    As ``IDMVehicle(road, ego.position, ego.heading, ego.speed, target_speed=lane speed limit,
    enable_lane_change=lane_change)`` would: DELTA = 4, timer = (x + y) pi mod 1, target lane = lane.
    """
    lane = st.lane[scenes, 0]
    st.is_idm[scenes, 0] = True
    st.lane_change[scenes, 0] = lane_change
    st.target_speed_mps[scenes, 0] = lanes.speed_limit_mps[lane]
    st.delta[scenes, 0] = behavior.DELTA
    st.target_lane[scenes, 0] = lane
    st.timer_s[scenes, 0] = torch.remainder((st.x_m[scenes, 0] + st.y_m[scenes, 0]) * np.pi, behavior.LANE_CHANGE_DELAY_S)


def scene_batch(st: VehicleState, lanes: LaneTable, scenes: np.ndarray | None = None) -> spec.SceneBatch:
    """The spec-frame :class:`spec.SceneBatch` of every scene (ego in slot 0), as the adapter's ``frame_rows``;
    of the rows ``scenes [k]`` only, if given (a scene's observation depends on its own row alone)."""
    x, y, h, v, lane, valid = st.x_m, st.y_m, st.heading_rad, st.speed_mps, st.lane, st.valid
    if scenes is not None:
        rows = torch.as_tensor(scenes, device=x.device)
        x, y, h, v, lane, valid = (t[rows] for t in (x, y, h, v, lane, valid))
    ego_lane = lane[:, 0]
    s = x[:, 0] - lanes.x_start_m[ego_lane]
    r = lanes.lateral_m(ego_lane, s, y[:, 0])
    out = torch.stack([x, -y, v * torch.cos(h), -(v * torch.sin(h)), -h], dim=0).to("cpu", torch.float64).numpy()
    ego = torch.stack([lanes.edge_lane_count[ego_lane].to(r.dtype), -r, -lanes.heading_at(ego_lane, s)], dim=0).to("cpu", torch.float64).numpy()
    lane_id = lanes.lane_id[lane].cpu().numpy()
    return spec.SceneBatch(
        x_m=out[0], y_m=out[1], vx_mps=out[2], vy_mps=out[3], heading_rad=out[4],
        lane=lane_id, valid=_np(valid), ego=np.zeros(x.shape[0], dtype=np.int64),
        lane_count=ego[0], lane_offset_m=ego[1], lane_heading_rad=ego[2],
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------------------


@dataclass
class StepResult:
    """One batched step. Arrays have a leading ``[B]``.

    ``obs`` is the next observation (the new episode's first where ``done``); ``final_obs``
    and ``final_info`` hold the finished episodes' last observation and info (rows where ``done``).
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    info: dict[str, np.ndarray]
    final_obs: np.ndarray
    final_info: dict[str, np.ndarray]

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class BatchedHighwayEnv:
    """B scenes of one scenario split, stepped together (see the module docstring).

    - ``reset(seeds=None)`` -> observations ``[B, OBS_DIM]`` float32, info dict of ``[B]`` arrays;
    - ``step(action_unit [B, 2])`` -> :class:`StepResult` (auto-reset of finished scenes).
    """

    def __init__(
        self,
        scenario: Scenario,
        num_envs: int,
        split: str = "train",
        seed_offset: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        autoreset: bool = True,
        kernel: str = "auto",
    ):
        if scenario.simulator != "highway":
            raise ScenarioError(scenario.source, f"the batched simulator runs highway scenarios, not '{scenario.simulator}'", key="simulator")
        self.scenario = scenario
        self.split = split
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.dtype = dtype or (torch.float32 if self.device.type == "cuda" else torch.float64)
        self.autoreset = autoreset
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        self.kernel = kernel
        self.family: SceneFamily = scene_family(scenario, split)
        self.lanes = self.family.lanes.to(self.device, self.dtype)
        self.seeds = np.asarray(scenario.seeds_for(split), dtype=np.int64)
        self.seed_offset = int(seed_offset)
        self.policy_dt_s = 1.0 / scenario.policy_frequency_hz
        self.sim_dt_s = 1.0 / scenario.simulation_frequency_hz
        self.frames_per_action = scenario.frames_per_action
        self.max_policy_steps = scenario.max_policy_steps

        # Initial scenes of every seed of the split, drawn once: a reset is a gather.
        self._pool = self.family.spawn(self.seeds).to(self.device, self.dtype)
        self._seed_order = np.argsort(self.seeds, kind="stable")
        self._seeds_sorted = self.seeds[self._seed_order]
        b = self.num_envs
        self.state: VehicleState = VehicleState(**{k: v[:1].expand(b, *v.shape[1:]).clone() for k, v in self._pool.tensors().items()}, n_vehicles=self._pool.n_vehicles)

        # Episode bookkeeping (the adapter's task state), per scene.
        self.episode = np.zeros(b, dtype=np.int64)  # episodes started per scene (DeclaredSeeds' counter)
        self.episode_seed = np.zeros(b, dtype=np.int64)
        self.policy_steps = np.zeros(b, dtype=np.int64)
        self.x_start = np.zeros(b)
        self.x_goal = np.zeros(b)
        self.last_lane = np.zeros(b, dtype=np.int64)
        self.lane_changes = np.zeros(b, dtype=np.int64)
        self.stopped_s = np.zeros(b)
        self.last_action = np.zeros((b, spec.ACTION_DIM))
        self.ego_idm = np.zeros(b, dtype=bool)
        if kernel == "auto":
            self.kernel = "numba" if cpu_kernel.usable(self.state) else "torch"
        elif kernel == "numba" and not cpu_kernel.usable(self.state):
            raise ValueError("kernel 'numba' needs numba installed and a float64 state on the CPU")
        self._on_ramp = torch.zeros(self.lanes.count, dtype=torch.bool, device=self.device)
        if self.family.on_ramp_lanes:
            self._on_ramp[list(self.family.on_ramp_lanes)] = True
        self._kernel_threads: int | None = None  # inside step/reset on the kernel: the threads frames get

    @contextmanager
    def _tensor_ops_on_one_thread(self):
        """Around a step or reset on the CPU kernel: the env's own tensor ops (gathers, resets, outcomes,
        the scene batch) on one torch thread, the kernel's frames on torch's count as it was.

        Those ops are small ([B] and [B, M]) and gain nothing from a second thread, but each
        multi-threaded op ends at an OpenMP barrier, and beside a busy process the thread that shares its
        core makes every barrier wait: the step fell to half a 1-thread run's rate (``--contention`` in
        benchmarks/results/batched_sim_lane_change_2threads.json measures it now). The kernel's dynamic
        schedule does not stall that way. Re-entrant; on the torch path (CUDA, float32) nothing changes.
        """
        if self.kernel != "numba" or self._kernel_threads is not None:
            yield
            return
        self._kernel_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(self._kernel_threads)
            self._kernel_threads = None

    # ------------------------------------------------------------------ seeds and resets

    def next_seeds(self, scenes: np.ndarray) -> np.ndarray:
        """The next episode seed of each scene in ``scenes`` (DeclaredSeeds' rule), advancing its counter."""
        k = (self.seed_offset + self.episode[scenes] * self.num_envs + scenes) % len(self.seeds)
        self.episode[scenes] += 1
        return self.seeds[k]

    def reset(self, seeds: np.ndarray | list[int] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Start a new episode in every scene: ``seeds[b]`` if given, else the next declared seed."""
        scenes = np.arange(self.num_envs)
        if seeds is None:
            seeds = self.next_seeds(scenes)
        with self._tensor_ops_on_one_thread():
            self.reset_scenes(scenes, np.asarray(seeds, dtype=np.int64))
            return self.observe(), self.info(np.zeros(self.num_envs, dtype=bool))

    def pool_rows(self, seeds: np.ndarray) -> np.ndarray:
        """Row of each seed in the split's scene pool (-1 for seeds outside the split)."""
        pos = np.clip(np.searchsorted(self._seeds_sorted, seeds), 0, len(self.seeds) - 1)
        return np.where(self._seeds_sorted[pos] == seeds, self._seed_order[pos], -1)

    def reset_scenes(self, scenes: np.ndarray, seeds: np.ndarray) -> None:
        """Load the initial scene of episode seed ``seeds[i]`` into scene ``scenes[i]``."""
        if len(scenes) == 0:
            return
        rows = self.pool_rows(seeds)
        dst = torch.as_tensor(scenes, device=self.device)
        known = rows >= 0
        if known.all():
            self.state.index_copy_(dst, self._pool, torch.as_tensor(rows, device=self.device))
        else:  # seeds outside the split: draw them now
            extra = self.family.spawn(seeds).to(self.device, self.dtype)
            self.state.index_copy_(dst, extra, torch.arange(len(seeds), device=self.device))
        self.episode_seed[scenes] = seeds
        self.ego_idm[scenes] = False
        self.start_episodes(scenes)

    def start_episodes(self, scenes: np.ndarray) -> None:
        """The adapter's ``_start_task`` for scenes whose state was just loaded."""
        st, sc = self.state, self.scenario
        idx = torch.as_tensor(scenes, device=self.device)
        x0 = st.x_m[idx, 0].cpu().numpy().astype(np.float64)
        self.x_start[scenes] = x0
        if sc.task == "lane_change":
            self.x_goal[scenes] = tasks.lane_change.goal_x_m(x0, sc.success)
        elif sc.task == "merge":
            self.x_goal[scenes] = float(self.family.config["goal_x_m"])
        else:  # stop: the route ends where the ego's front enters the stop zone
            obs_slot = st.n_vehicles
            rear = (st.x_m[idx, obs_slot] - st.length_m[idx, obs_slot] / 2).cpu().numpy()
            self.x_goal[scenes] = tasks.stop.goal_x_m(rear, st.length_m[idx, 0].cpu().numpy(), sc.success)
        self.policy_steps[scenes] = 0
        self.lane_changes[scenes] = 0
        self.stopped_s[scenes] = 0.0
        self.last_lane[scenes] = _np(st.lane[idx, 0])
        self.last_action[scenes] = 0.0

    # ------------------------------------------------------------------ stepping

    def step(self, action_unit: np.ndarray) -> StepResult:
        """Apply ``action_unit [B, 2]`` for one policy period in every scene."""
        with self._tensor_ops_on_one_thread():
            return self._step(action_unit)

    def _step(self, action_unit: np.ndarray) -> StepResult:
        st = self.state
        physical, hw = ego_action_highway(action_unit, _np(st.speed_mps[:, 0]), self.policy_dt_s)
        set_ego_action(st, torch.as_tensor(hw, device=self.device, dtype=self.dtype))
        self.simulate(self.frames_per_action)
        self.policy_steps += 1
        self.last_action = physical
        self._update_task()

        crashed, offroad, completion = self._outcome()
        m = tasks.Measurements(crashed=crashed, offroad=offroad, route_completion=completion)
        terminated = tasks.task(self.scenario.task).terminated("highway", m)  # highway-env's twin
        truncated = ~terminated & (self.policy_steps >= self.max_policy_steps)
        done = terminated | truncated
        info = self.info(done, crashed, offroad, completion)
        obs = self.observe()
        reward = np.zeros(self.num_envs, dtype=np.float32)
        final_obs, final_info = obs[done], {k: v[done] for k, v in info.items()}
        if self.autoreset and done.any():
            scenes = np.flatnonzero(done)
            self.reset_scenes(scenes, self.next_seeds(scenes))
            obs = obs.copy()
            obs[scenes] = self.observe(scenes)  # the new episodes' first observations; the other rows are final
        return StepResult(obs, reward, terminated, truncated, info, final_obs, final_info)

    def simulate(self, frames: int) -> None:
        """``frames`` simulation frames of every scene, with this env's kernel (no episode logic)."""
        if self.kernel == "numba":
            cpu_kernel.simulate_frames(self.state, self.lanes, self.sim_dt_s, frames, self._kernel_threads)
        else:
            for _ in range(frames):
                simulate_frame(self.state, self.lanes, self.sim_dt_s)

    def observe(self, scenes: np.ndarray | None = None) -> np.ndarray:
        """Spec observations of every scene, ``[B, OBS_DIM]`` float32, or of the rows ``scenes [k]`` only (``[k, OBS_DIM]``)."""
        return spec.observe_batch(scene_batch(self.state, self.lanes, scenes))

    # ------------------------------------------------------------------ task logic (HighwayAdapter)

    def _ego_lane(self) -> np.ndarray:
        return _np(self.state.lane[:, 0])

    def _update_task(self) -> None:
        lane = self._ego_lane()
        edge = self.lanes.edge.cpu().numpy()
        same_edge = edge[lane] == edge[self.last_lane]
        self.lane_changes += (same_edge & (lane != self.last_lane)).astype(np.int64)
        self.last_lane = lane
        if self.scenario.task == "stop":
            speed = self.state.speed_mps[:, 0].cpu().numpy()
            self.stopped_s = tasks.stop.stopped_s(self.stopped_s, speed, self.policy_dt_s, self.scenario.success)

    def _outcome(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        st = self.state
        crashed = _np(st.crashed[:, 0])
        offroad = collision.off_road(st, self.lanes).cpu().numpy()
        x = st.x_m[:, 0].cpu().numpy().astype(np.float64)
        span = self.x_goal - self.x_start
        with np.errstate(divide="ignore", invalid="ignore"):
            done = np.where(span > 0, (x - self.x_start) / np.where(span > 0, span, 1.0), 1.0)
        return crashed, offroad, np.clip(done, 0.0, 1.0)

    def gap_m(self) -> np.ndarray:
        """stop: bumper gap from the ego's front to the obstacle's rear along the ego lane [m]."""
        st, o = self.state, self.state.n_vehicles
        xs = self.lanes.x_start_m[st.lane[:, 0]]
        d = (st.x_m[:, o] - xs) - (st.x_m[:, 0] - xs)
        return (d - (st.length_m[:, 0] + st.length_m[:, o]) / 2).cpu().numpy().astype(np.float64)

    def info(self, final: np.ndarray, crashed=None, offroad=None, completion=None) -> dict[str, np.ndarray]:
        """The adapter's info keys as ``[B]`` arrays (``success`` only where ``final``)."""
        if crashed is None:
            crashed, offroad, completion = self._outcome()
        st, criteria = self.state, self.scenario.success
        lane = self.state.lane[:, 0]
        info = {
            base.INFO_CRASHED: crashed,
            base.INFO_OFFROAD: offroad,
            base.INFO_SUCCESS: np.zeros(self.num_envs, dtype=bool),
            base.INFO_ROUTE_COMPLETION: completion,
            base.INFO_SPEED_MPS: st.speed_mps[:, 0].cpu().numpy().astype(np.float64),
            base.INFO_LANE_INDEX: self.lanes.lane_id[lane].cpu().numpy(),
            base.INFO_TIME_S: self.policy_steps * self.policy_dt_s,
            "episode_seed": self.episode_seed.copy(),
            "action_physical": np.array(self.last_action, dtype=np.float64).reshape(self.num_envs, spec.ACTION_DIM),
            "lane_changes": self.lane_changes.copy(),
        }
        if self.scenario.task == "merge":
            info["merged"] = ~self._on_ramp[lane].cpu().numpy()
        elif self.scenario.task == "stop":
            info["gap_m"] = self.gap_m()
            info["stopped_s"] = self.stopped_s.copy()
        m = tasks.Measurements(crashed=crashed, offroad=offroad, route_completion=completion, merged=info.get("merged"),
                               gap_m=info.get("gap_m"), stopped_s=info.get("stopped_s"))
        info[base.INFO_SUCCESS] = final & tasks.task(self.scenario.task).success(criteria, m)
        return info
