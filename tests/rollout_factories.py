"""A real PPO model whose rollout buffer holds one collected rollout: the input of PPO-update tests."""

import numpy as np

from drive_drail import spec
from drive_drail.train.adversarial import build_ppo
from drive_drail.train.envs import make_vec_env
from drive_drail.train.rollout import collect_rollout


def collected_model(config, obs_std: float = 1.0, sim: str = "adapter"):
    """``config.n_envs x config.ppo.n_steps`` transitions of ``config.scenario`` in an SB3 PPO's buffer (rewards 0)."""
    env = make_vec_env(config.scenario, config.n_envs, np.zeros(spec.OBS_DIM), np.full(spec.OBS_DIM, obs_std),
                       seed_offset=0, sim=sim)
    try:
        model = build_ppo(config, env, seed=0)
        model._setup_learn(config.n_envs * config.ppo.n_steps)
        collect_rollout(model, env, config.ppo.n_steps, key=(0, 0))
    finally:
        env.close()
    return model
