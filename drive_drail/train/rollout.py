"""Rollout collection for the adversarial loop: PPO's on-policy data, collected where the simulator runs.

A step needs only the actor's mean plus Gaussian noise,

    a_t = mu_theta(s_t) + sigma_theta * eps_t,   eps_t ~ N(0, I),

because the loop relabels every reward afterwards. So each simulator worker gets a numpy copy
of the actor (:class:`ActorSnapshot`) and plays its whole share of the rollout on its own
(:meth:`SegmentRunner.collect`), with no per-step round trip to the learner: with two
workers on two cores, one worker's reset no longer stalls the other. V(s_t) and
log pi_theta(a_t | s_t) of the whole rollout are evaluated afterwards in one batched pass
(:func:`collect_rollout`). theta does not change during the rollout, so these are the
numbers SB3's ``collect_rollouts`` computes step by step (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from drive_drail.models.encoders import EGO_DIM, PRESENT, SLOT_DIM, set_encoder_of
from drive_drail.sim.base import INFO_CRASHED, INFO_SPEED_MPS, INFO_SUCCESS
from drive_drail.train import sb3_bridge


@dataclass
class ActorSnapshot:
    """The actor's mean network and exploration std as numpy float32 arrays: all a worker needs to act.

    ``weights[i]``: ``[in_i, out_i]``, ``biases[i]``: ``[out_i]``; tanh after every layer but
    the last. ``set_weights`` / ``set_biases``: the set encoder's per-slot ReLU layers
    (``models/encoders.py``, Eq. 1-2), empty for a flat actor. ``std``: ``[act_dim]``, in the
    policy's unit action scale.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    std: np.ndarray
    set_weights: list[np.ndarray] = field(default_factory=list)
    set_biases: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def from_policy(cls, policy) -> ActorSnapshot:
        """Snapshot of an SB3 ``ActorCriticPolicy`` with a flat or set encoder and a tanh MLP actor."""
        hidden = list(policy.mlp_extractor.policy_net)
        if any(not isinstance(m, (torch.nn.Linear, torch.nn.Tanh)) for m in hidden):
            raise ValueError(f"ActorSnapshot supports tanh MLP actors only, got {hidden}")
        layers = [m for m in hidden if isinstance(m, torch.nn.Linear)] + [policy.action_net]
        set_encoder = set_encoder_of(policy.pi_features_extractor)
        set_layers = set_encoder.linears if set_encoder is not None else []

        def arrays(modules):
            return ([m.weight.detach().cpu().numpy().T.astype(np.float32) for m in modules],
                    [m.bias.detach().cpu().numpy().astype(np.float32) for m in modules])

        with torch.no_grad():
            (weights, biases), (set_weights, set_biases) = arrays(layers), arrays(set_layers)
            return cls(weights, biases, policy.log_std.exp().detach().cpu().numpy().astype(np.float32), set_weights, set_biases)

    def mean(self, obs: np.ndarray) -> np.ndarray:
        """``mu(s)`` for ``obs [n, obs_dim]`` -> ``[n, act_dim]``."""
        h = np.asarray(obs, dtype=np.float32)
        if self.set_weights:  # NeighbourSetEncoder, Eq. 1-2
            slots = h[:, EGO_DIM:].reshape(len(h), -1, SLOT_DIM)
            g = slots
            for w, b in zip(self.set_weights, self.set_biases):
                g = np.maximum(g @ w + b, 0.0)
            g = np.where(slots[:, :, PRESENT : PRESENT + 1] > 0.5, g, 0.0).max(axis=1)
            h = np.concatenate([h[:, :EGO_DIM], g], axis=1).astype(np.float32)
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.tanh(h @ w + b)
        return h @ self.weights[-1] + self.biases[-1]

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``mu(s) + sigma * eps`` -> ``[n, act_dim]`` (unclipped, as SB3 stores actions)."""
        mean = self.mean(obs)
        return mean + self.std * rng.standard_normal(mean.shape, dtype=np.float32)


_BLAS = None


def single_threaded_blas():
    """numpy's BLAS held to one thread while the actor's small matmuls run between simulator steps.

    Its idle threads spin, and next to torch's own OpenMP threads (the learner's, or the in-process
    batched simulator's) they slowed a rollout on 2 cores about 4x (benchmarks/trainer_overhead.py).
    torch's thread pool is left as it is.
    """
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


class EpisodeLedger:
    """What the relabelling step needs from a rollout: where episodes ended, and how.

    ``truncated``: (step, env, final obs) of time-limit ends (bootstrapped with V);
    ``terminated``: (step, env) of failures (paid the absorbing state's return);
    ``episodes``: per finished episode, length, crashed, success and mean speed [m/s].
    """

    def __init__(self, n_envs: int) -> None:
        self.truncated: list[tuple[int, int, np.ndarray]] = []
        self.terminated: list[tuple[int, int]] = []
        self.episodes: list[dict] = []
        self._length = np.zeros(n_envs)
        self._speed_sum_mps = np.zeros(n_envs)

    def start_rollout(self) -> None:
        self.truncated, self.terminated, self.episodes = [], [], []

    def record(self, step: int, dones: np.ndarray, infos: list[dict]) -> None:
        self._length += 1
        self._speed_sum_mps += [info.get(INFO_SPEED_MPS, 0.0) for info in infos]
        for env_idx in np.flatnonzero(dones):
            info = infos[env_idx]
            if info.get("TimeLimit.truncated", False):
                self.truncated.append((step, int(env_idx), info["terminal_observation"]))
            elif not info.get(INFO_SUCCESS, False):  # a goal reached ends without a price
                self.terminated.append((step, int(env_idx)))
            length = self._length[env_idx]
            self.episodes.append(
                {
                    "length": float(length),
                    "crashed": float(bool(info.get(INFO_CRASHED, False))),
                    "success": float(bool(info.get(INFO_SUCCESS, False))),
                    "mean_speed_mps": float(self._speed_sum_mps[env_idx] / max(length, 1)),
                }
            )
            self._length[env_idx], self._speed_sum_mps[env_idx] = 0, 0.0


@dataclass
class Segment:
    """``n_steps`` consecutive steps of ``n_envs`` environments under one policy.

    ``obs [n_steps, n_envs, obs_dim]``: the observations acted on; ``actions [n_steps, n_envs,
    act_dim]``: unclipped; ``episode_starts [n_steps, n_envs]``: 1 where ``obs`` is an episode's
    first; ``last_obs [n_envs, obs_dim]`` / ``last_episode_starts [n_envs]``: where the next
    segment starts. ``truncated``, ``terminated``, ``episodes``: as in :class:`EpisodeLedger`.
    """

    obs: np.ndarray
    actions: np.ndarray
    episode_starts: np.ndarray
    last_obs: np.ndarray
    last_episode_starts: np.ndarray
    truncated: list[tuple[int, int, np.ndarray]] = field(default_factory=list)
    terminated: list[tuple[int, int]] = field(default_factory=list)
    episodes: list[dict] = field(default_factory=list)

    @staticmethod
    def concat(segments: list[Segment]) -> Segment:
        """Side by side along the env axis; env indices of later segments are shifted."""
        if len(segments) == 1:
            return segments[0]
        offsets = np.cumsum([0] + [s.obs.shape[1] for s in segments[:-1]])
        return Segment(
            obs=np.concatenate([s.obs for s in segments], axis=1),
            actions=np.concatenate([s.actions for s in segments], axis=1),
            episode_starts=np.concatenate([s.episode_starts for s in segments], axis=1),
            last_obs=np.concatenate([s.last_obs for s in segments]),
            last_episode_starts=np.concatenate([s.last_episode_starts for s in segments]),
            truncated=[(t, int(e + k), o) for s, k in zip(segments, offsets) for t, e, o in s.truncated],
            terminated=[(t, int(e + k)) for s, k in zip(segments, offsets) for t, e in s.terminated],
            episodes=[e for s in segments for e in s.episodes],
        )


def noise_rng(key: tuple[int, ...], worker: int) -> np.random.Generator:
    """The exploration noise of one worker for one rollout: a function of (run seed, iteration, worker)
    only, so a run repeats, and a resumed run draws what the uninterrupted one would have."""
    return np.random.default_rng([*key, worker])


class SegmentRunner(VecEnvWrapper):
    """A ``VecEnv`` that remembers where its environments are, so it can play a :class:`Segment` on its own.

    Used in-process (one worker, or the batched simulator) and inside each subprocess worker
    of :class:`drive_drail.train.workers.RolloutWorkers`.
    """

    def __init__(self, venv: VecEnv, worker: int = 0):
        super().__init__(venv)
        self.worker = worker
        self.ledger = EpisodeLedger(venv.num_envs)
        self.obs: np.ndarray | None = None
        self.episode_starts = np.ones(venv.num_envs, dtype=bool)
        self._step = 0

    def spaces(self) -> tuple:
        """``(observation_space, action_space)``: what a subprocess worker reports when it starts."""
        return self.observation_space, self.action_space

    def reset(self) -> np.ndarray:
        self.obs = self.venv.reset()
        self.episode_starts = np.ones(self.num_envs, dtype=bool)
        return self.obs

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.ledger.record(self._step, dones, infos)
        self._step += 1
        self.obs, self.episode_starts = obs, dones
        return obs, rewards, dones, infos

    def collect(self, actor: ActorSnapshot, n_steps: int, key: tuple[int, ...]) -> Segment:
        """Play ``n_steps`` steps of every environment with ``actor`` plus noise from ``noise_rng(key, worker)``."""
        if self.obs is None:
            self.reset()
        rng = noise_rng(key, self.worker)
        n = self.num_envs
        obs = np.zeros((n_steps, n, *self.observation_space.shape), np.float32)
        actions = np.zeros((n_steps, n, *self.action_space.shape), np.float32)
        starts = np.zeros((n_steps, n), np.float32)
        low, high = self.action_space.low, self.action_space.high
        self.ledger.start_rollout()
        self._step = 0
        with single_threaded_blas():
            for t in range(n_steps):
                obs[t], starts[t] = self.obs, self.episode_starts
                actions[t] = actor.sample(self.obs, rng)
                self.step(np.clip(actions[t], low, high))
        ledger = self.ledger
        return Segment(obs, actions, starts, np.asarray(self.obs, np.float32), self.episode_starts.copy(),
                       ledger.truncated, ledger.terminated, ledger.episodes)

    def collect_segments(self, actor: ActorSnapshot, n_steps: int, key: tuple[int, ...]) -> list[Segment]:
        return [self.collect(actor, n_steps, key)]


def collect_rollout(model: PPO, env, n_steps: int, key: tuple[int, ...]) -> Segment:
    """Fill ``model.rollout_buffer`` with ``n_steps x n_envs`` transitions of the current policy.

    ``env``: a :class:`SegmentRunner` or :class:`~drive_drail.train.workers.RolloutWorkers`;
    ``key``: seeds the exploration noise (see :func:`noise_rng`). Leaves rewards at 0, as
    ``buf.reset()`` made them (the discriminator relabels them); advances the model as SB3's
    ``collect_rollouts`` does (:func:`drive_drail.train.sb3_bridge.load_rollout`). Returns the merged segment, whose episode ends the relabelling needs.
    """
    buf = model.rollout_buffer
    if buf.buffer_size != n_steps:
        raise ValueError(f"the rollout buffer holds {buf.buffer_size} steps per env, the rollout asks for {n_steps}")
    policy = model.policy
    policy.set_training_mode(False)
    segment = Segment.concat(env.collect_segments(ActorSnapshot.from_policy(policy), n_steps, key))
    sb3_bridge.load_rollout(model, segment.obs, segment.actions, segment.episode_starts, segment.last_obs,
                            segment.last_episode_starts)

    # V(s_t) and log pi(a_t | s_t) of the whole rollout in one pass (theta is unchanged).
    n = n_steps * env.num_envs
    with torch.no_grad():
        values, log_probs, _ = policy.evaluate_actions(
            obs_as_tensor(buf.observations.reshape(n, -1), model.device), torch.as_tensor(buf.actions.reshape(n, -1), device=model.device)
        )
    sb3_bridge.mark_full(model, values.reshape(n_steps, env.num_envs).cpu().numpy(),
                         log_probs.reshape(n_steps, env.num_envs).cpu().numpy())
    return segment
