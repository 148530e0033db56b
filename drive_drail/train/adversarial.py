"""The adversarial imitation loop of METHOD.md (Algorithm 1), on stable-baselines3's PPO policy and buffer.

    for i = 0, 1, 2, ...:
        collect agent transitions with the current policy          (rollout.collect_rollout)
        update phi with the gradient of L_D, expert vs agent       (Eq. 3)
        relabel the collected transitions with r_phi               (Eq. 4)
        update the policy to maximise r_phi with PPO (+ BC term)   (ppo.ppo_update)

One loop serves every algorithm: ``drail``, ``drail-un``, ``gail`` and ``diffail`` differ
only in the discriminator (``make_discriminator``); ``bc`` stops after behaviour cloning.

Relabelling (the absorbing state of a failure, its price floor, reward normalisation and the
time-limit bootstrap) lives in :mod:`drive_drail.train.relabel`, with its reasons.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import obs_as_tensor, set_random_seed
from tqdm import tqdm

from drive_drail import spec
from drive_drail.atomic import write_csv, write_json
from drive_drail.errors import UserError
from drive_drail.models.discriminators import make_discriminator
from drive_drail.models.encoders import NeighbourSetEncoder
from drive_drail.models.policy import DeterministicActor
from drive_drail.scenario import load_scenario
from drive_drail.train import checkpoint, relabel, sb3_bridge
from drive_drail.train.bc import behaviour_clone
from drive_drail.train.config import TrainConfig
from drive_drail.train.demos import Demos, load_demos
from drive_drail.train.envs import make_vec_env
from drive_drail.train.metrics import MetricsLog, WandbTracker
from drive_drail.train.ppo import PPOSettings, ppo_update
from drive_drail.train.rollout import collect_rollout


class TrainingDiverged(RuntimeError):
    """A loss or a parameter became NaN/inf."""


class TrainingStopped(UserError):
    """SIGTERM (a cluster scheduler's stop) arrived: the run checkpointed after its iteration and stopped."""

    exit_code = 128 + 15  # the shell's code for a SIGTERM'd process, after a clean stop


class _StopRequest:
    """Turns SIGTERM into a request the loop honours after the current iteration (and its checkpoint)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __enter__(self) -> "_StopRequest":
        import signal
        import threading

        self._previous = None
        if threading.current_thread() is threading.main_thread():  # signal handlers live on the main thread only
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _check_finite(model: PPO, iteration: int, values: dict[str, float]) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise TrainingDiverged(f"{name} is {value} at iteration {iteration}")
    for name, p in model.policy.named_parameters():
        if not torch.isfinite(p).all():
            raise TrainingDiverged(f"policy parameter {name} is NaN/inf at iteration {iteration}")


class NeighbourSetExtractor(BaseFeaturesExtractor):
    """:class:`NeighbourSetEncoder` as an SB3 features extractor (``policy_kwargs["features_extractor_class"]``)."""

    def __init__(self, observation_space: gym.spaces.Box, hidden_sizes: tuple[int, ...] = (64, 64)):
        encoder = NeighbourSetEncoder(tuple(hidden_sizes))
        super().__init__(observation_space, encoder.out_dim)
        self.encoder = encoder

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.encoder(observations)


def build_ppo(config: TrainConfig, env, seed: int) -> PPO:
    """SB3's PPO with separate actor and critic networks, each behind its own encoder (``config.policy.encoder``)."""
    lr = config.ppo.learning_rate
    encoder = {}
    if config.policy.encoder == "set":
        encoder = {"features_extractor_class": NeighbourSetExtractor, "share_features_extractor": False,
                   "features_extractor_kwargs": {"hidden_sizes": tuple(config.policy.set_hidden)}}
    model = PPO(
        "MlpPolicy",
        env,
        learning_rate=lambda progress_remaining: lr * progress_remaining,  # linear decay
        n_steps=config.ppo.n_steps,
        batch_size=config.ppo.batch_size,
        n_epochs=config.ppo.epochs,
        gamma=config.ppo.gamma,
        gae_lambda=config.ppo.gae_lambda,
        clip_range=config.ppo.clip_range,
        ent_coef=config.ppo.ent_coef,
        vf_coef=config.ppo.vf_coef,
        max_grad_norm=config.ppo.max_grad_norm,
        policy_kwargs={
            "net_arch": {"pi": list(config.policy.hidden), "vf": list(config.policy.hidden)},
            "activation_fn": torch.nn.Tanh,
            **encoder,
        },
        seed=seed,
        device=config.torch_device(),
        verbose=0,
    )
    # Per-dimension exploration noise: steering needs far less than acceleration
    # (0.02 of the unit range is ~0.016 rad; 0.37, SB3's default start, drives off-road).
    with torch.no_grad():
        model.policy.log_std.copy_(torch.log(torch.as_tensor(config.policy.init_action_std, dtype=torch.float32)))
    return model


def discriminator_settings(config: TrainConfig, algo: str, device: torch.device) -> dict:
    """The discriminator config of ``algo`` (``make_discriminator``'s ``config``) from the run's settings."""
    common = {"lr": config.disc.lr, "epochs": config.disc.epochs, "batch_size": config.disc.batch, "device": str(device)}
    if algo == "gail":
        return {**common, "hidden_sizes": (config.disc.hidden, config.disc.hidden)}
    if algo == "diffail":
        return {**common, "hidden_dim": config.disc.hidden, "reward_samples": config.disc.reward_samples}
    return {**common, "hidden_dim": config.disc.hidden, "scoring": "fused" if config.disc.fused else "unshared",
            "label_injection": config.disc.label_injection, "reward_samples": config.disc.reward_samples}


def train(config: TrainConfig, resume: bool = False, progress: bool = True, steps: int | None = None) -> Path:
    """Run (or resume) one training run; returns the run folder holding ``actor.pt``.

    On ``resume`` the run's saved config is used; ``steps`` (if given) sets a new total.
    """
    run_dir = Path(config.out)
    if resume:
        saved = checkpoint.load_config(run_dir)
        if saved is None:
            raise UserError(f"{run_dir}: nothing to resume (no checkpoint found)")
        config = saved
        if steps is not None:
            config.steps = steps
    elif checkpoint.latest(run_dir) is not None:
        raise UserError(f"{run_dir}: a run exists there; pass --resume to continue it or choose another --out")
    config.validate()
    scenario = load_scenario(config.scenario)
    if config.ppo.bc_coef is None:  # the value measured for this scenario (saved resolved in config.json)
        config.ppo.bc_coef = scenario.training.bc_coef if scenario.training.bc_coef is not None else 0.0
    demos = load_demos(config.demos, scenario.task if config.task_filter else None, scenario.policy_frequency_hz,
                       config.obs_std_floor, scenario_task=scenario.task, slot_shared=config.policy.encoder == "set",
                       lane_min_std=config.lane_std_floor)
    set_random_seed(config.seed)

    # Expert data standardised once, with its own fixed statistics.
    expert_obs = (demos.obs - demos.obs_mean) / demos.obs_std
    expert_act = demos.action_unit

    env = make_vec_env(config.scenario, config.n_envs, demos.obs_mean, demos.obs_std, seed_offset=config.seed, sim=config.sim)
    write_json(run_dir / "config.json", config.to_dict())  # only once the run can start: a failed start leaves no folder
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.learner_threads())
    try:
        with _StopRequest() as stop_request:
            return _train_loop(config, run_dir, env, demos, expert_obs, expert_act, resume, progress, stop_request)
    finally:
        torch.set_num_threads(threads_before)
        env.close()


def _train_loop(config, run_dir, env, demos: Demos, expert_obs, expert_act, resume, progress, stop_request) -> Path:
    model = build_ppo(config, env, config.seed)
    disc = None
    if config.algo != "bc":
        disc_obs_dim = spec.OBS_DIM + (1 if config.reward.absorbing else 0)
        disc = make_discriminator(config.algo, disc_obs_dim, spec.ACTION_DIM, discriminator_settings(config, config.algo, model.device),
                                  seed=config.seed)
    tracker = WandbTracker(run_dir, config.to_dict(), resume) if config.tracker == "wandb" else None
    metrics = MetricsLog(run_dir / "metrics.csv", fresh=not resume, tensorboard_dir=run_dir / "tb", tracker=tracker)
    iterations = max(1, config.steps // (config.ppo.n_steps * config.n_envs))
    start = 0

    if resume:
        state = checkpoint.restore(run_dir, model, disc)
        start = state.iteration
        metrics.truncate_after(state.global_step)
    else:
        if config.algo == "bc" or config.bc.warm_start:
            bc, history = behaviour_clone(model.policy, expert_obs, expert_act, config.bc.epochs, config.bc.lr, config.seed,
                                          progress=progress)
            metrics.write(0, {f"bc/{k}": v for k, v in bc.items()})
            write_csv(run_dir / "bc.csv", history)  # per-epoch losses: is BC still improving, is it overfitting?
        if config.algo == "bc":
            iterations = 0

    total_timesteps = iterations * config.ppo.n_steps * config.n_envs
    sb3_bridge.start_learning(model, total_timesteps, resume)
    if resume:
        model.num_timesteps = state.global_step
    ret_std = checkpoint.RunningStd() if not resume else state.ret_std
    bar = tqdm(total=total_timesteps, initial=model.num_timesteps, unit="step", disable=None if progress else True, desc=config.algo)
    buf = model.rollout_buffer
    # Discriminator inputs carry an absorbing-state flag column (0 = a real state).
    disc_expert_obs = relabel.with_flag(expert_obs, 0.0) if config.reward.absorbing else expert_obs

    def value_fn(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model.policy.predict_values(obs_as_tensor(obs, model.device)).cpu().numpy()[:, 0]

    p = config.ppo
    ppo_settings = PPOSettings(p.epochs, p.batch_size, p.clip_range, p.ent_coef, p.vf_coef, p.max_grad_norm, p.bc_coef,
                               p.separate_grad_clip)
    last_checkpoint = time.monotonic()
    for iteration in range(start, iterations):
        t0 = time.perf_counter()
        # 1. Collect agent transitions with the current policy.
        rollout = collect_rollout(model, env, config.ppo.n_steps, key=(config.seed, iteration))
        t_rollout = time.perf_counter()
        n_steps, n_envs = buf.buffer_size, buf.n_envs
        agent_obs = buf.observations.reshape(n_steps * n_envs, -1).astype(np.float32)
        agent_act = np.clip(buf.actions.reshape(n_steps * n_envs, -1), -1.0, 1.0).astype(np.float32)
        row = {}

        # 2. Update phi with the gradient of L_D: expert batch vs agent batch (Eq. 3), with one
        #    absorbing pair per failure on the agent side (relabel.py).
        disc_agent_obs = relabel.with_flag(agent_obs, 0.0) if config.reward.absorbing else agent_obs
        n_abs = len(rollout.terminated) if config.reward.absorbing else 0
        row.update(disc.update(disc_expert_obs, expert_act, *relabel.discriminator_batch(disc_agent_obs, agent_act, n_abs, config.ppo.gamma)))

        # 3. Relabel the collected transitions with r_phi = log D - log(1 - D) (Eq. 4); price the
        #    failures, normalise, bootstrap the time limits.
        reward = disc.reward(disc_agent_obs, agent_act).reshape(n_steps, n_envs).astype(np.float32)
        row["charts/reward_mean"], row["charts/reward_std"] = float(reward.mean()), float(reward.std())
        if n_abs:
            reward, paid = relabel.pay_absorbing(reward, rollout.terminated, disc.reward, config.ppo.gamma, config.reward.crash_floor_quantile)
            row.update(paid)
        if config.reward.norm:
            reward = relabel.normalise(reward, buf.episode_starts, ret_std, config.ppo.gamma)
        reward = relabel.bootstrap_truncations(reward, rollout.truncated, value_fn, config.ppo.gamma)
        sb3_bridge.compute_returns(model, reward)
        t_relabel = time.perf_counter()

        # 4. Update the policy to maximise r_phi with PPO (+ lambda_BC * L_BC on the demonstrations).
        lr = config.ppo.learning_rate * (1.0 - model.num_timesteps / total_timesteps)  # linear decay to 0
        row.update(ppo_update(model.policy, buf, ppo_settings, lr, (expert_obs, expert_act),
                              np.random.default_rng((config.seed, iteration, 1))))
        if rollout.episodes:
            for key in ("length", "crashed", "success", "mean_speed_mps"):
                row[f"charts/episode_{key}"] = float(np.mean([e[key] for e in rollout.episodes]))
            row["charts/episodes"] = len(rollout.episodes)
        t_end = time.perf_counter()
        row["charts/sps"] = n_steps * n_envs / (t_end - t0)
        # Where the iteration's wall time went [s]: simulation + acting, discriminator update +
        # relabelling + returns, PPO update (checkpoints, every checkpoint_interval_s, come after).
        row["time/rollout_s"], row["time/discriminator_s"], row["time/ppo_s"] = t_rollout - t0, t_relabel - t_rollout, t_end - t_relabel
        _check_finite(model, iteration, {k: v for k, v in row.items() if k.startswith(("losses/", "disc/loss"))})
        metrics.write(model.num_timesteps, row)
        bar.update(n_steps * n_envs)
        bar.set_postfix(D_exp=f"{row.get('disc/d_expert', float('nan')):.2f}", D_agent=f"{row.get('disc/d_agent', float('nan')):.2f}")

        # The first iteration is checkpointed at once: a kill before the interval leaves something to resume.
        stop = stop_request.signal is not None
        if (time.monotonic() - last_checkpoint >= config.checkpoint_interval_s or iteration == start
                or iteration + 1 == iterations or stop):
            checkpoint.save(run_dir, iteration + 1, model, disc, demos, ret_std, config)
            last_checkpoint = time.monotonic()
        if stop:
            bar.close()
            metrics.close()
            raise TrainingStopped(f"{run_dir}: stopped by signal {stop_request.signal} after iteration {iteration + 1} "
                                  f"(step {model.num_timesteps}), checkpointed; continue with --resume")
    bar.close()
    metrics.close()

    actor = DeterministicActor.from_sb3(model.policy.to("cpu"), demos.obs_mean, demos.obs_std)  # deployed on the CPU
    actor.save(run_dir / "actor.pt")
    if iterations == 0:  # BC: the only checkpoint is the final one
        checkpoint.save(run_dir, 0, model, disc, demos, ret_std, config)
    return run_dir
