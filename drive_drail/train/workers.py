"""Simulator workers in subprocesses, each playing its share of a rollout on its own.

SB3's ``SubprocVecEnv`` steps all workers in lock step: the learner sends actions, every
worker steps, the learner waits for the slowest. A highway-env reset costs several steps, so
on two cores each reset in one worker idles the other. Here each worker holds a
:class:`~drive_drail.train.rollout.SegmentRunner` over its environment and, given a snapshot of
the actor, plays its ``n_steps`` alone; the learner waits once per rollout.
:class:`RolloutWorkers` is still a full SB3 ``VecEnv`` (``reset``, ``step`` and the
attribute calls are forwarded), so SB3 code can drive it step by step as well.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper

from drive_drail.errors import UserError
from drive_drail.train.rollout import ActorSnapshot, Segment, SegmentRunner


LEARNER_POLL_S = 1.0
"""How often a worker checks that its learner still lives [s]."""


def _exit_when_learner_dies(learner_pid: int) -> None:
    """A daemon thread: end this worker once the learner process is gone (killed, even by SIGKILL).
    The worker's parent is the fork server, not the learner, so PR_SET_PDEATHSIG cannot do this."""
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(LEARNER_POLL_S)
            try:
                os.kill(learner_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # the pid was reused by another user's process: the learner is gone
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="learner-watch").start()


def _worker_main(remote, parent_remote, env_fn: CloudpickleWrapper, worker: int, learner_pid: int | None = None) -> None:
    """Serve ``(method, args, kwargs)`` calls on a ``SegmentRunner(DummyVecEnv([env_fn]))`` until ``close``.

    The environment is built on the first call, so a failure to build it (a bad scenario, missing
    assets) reaches the learner as that call's error instead of a silently dead worker. The worker
    exits within :data:`LEARNER_POLL_S` of its learner's death, even mid-rollout.
    """
    parent_remote.close()
    if learner_pid is not None:
        _exit_when_learner_dies(learner_pid)
    runner = None
    while True:
        try:
            method, args, kwargs = remote.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if method == "close" and runner is None:
            remote.send(("ok", None))
            break
        try:
            if runner is None:
                runner = SegmentRunner(DummyVecEnv([env_fn.var]), worker=worker)
            remote.send(("ok", getattr(runner, method)(*args, **kwargs)))
        except Exception as exc:  # the learner re-raises it, with the worker's traceback
            try:
                remote.send(("error", (exc, traceback.format_exc())))
            except Exception:  # an exception that does not pickle
                remote.send(("error", (RuntimeError(repr(exc)), traceback.format_exc())))
        if method == "close":
            break
    remote.close()


class RolloutWorkers(VecEnv):
    """``len(env_fns)`` environments, one per subprocess (started with ``forkserver``)."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], start_method: str = "forkserver"):
        ctx = mp.get_context(start_method)
        self.remotes, work_remotes = zip(*[ctx.Pipe() for _ in env_fns])
        self.processes = []
        for worker, (work_remote, remote, env_fn) in enumerate(zip(work_remotes, self.remotes, env_fns)):
            process = ctx.Process(target=_worker_main, args=(work_remote, remote, CloudpickleWrapper(env_fn), worker, os.getpid()),
                                  daemon=True)
            process.start()
            self.processes.append(process)
            work_remote.close()
        self.closed = False
        try:
            observation_space, action_space = self._call(range(len(self.remotes)), "spaces")[0]
        except BaseException:
            self.close()
            raise
        super().__init__(len(env_fns), observation_space, action_space)

    # -- plumbing ---------------------------------------------------------------------------
    def _send(self, workers: Sequence[int], method: str, *args, **kwargs) -> None:
        for w in workers:
            self.remotes[w].send((method, args, kwargs))

    def _receive(self, workers: Sequence[int]) -> list[Any]:
        replies = []
        for w in workers:
            try:
                replies.append(self.remotes[w].recv())
            except EOFError:
                raise RuntimeError(f"rollout worker {w} exited unexpectedly (exit code {self.processes[w].exitcode})") from None
        for w, (status, payload) in zip(workers, replies):
            if status == "error":
                exc, tb = payload
                if isinstance(exc, UserError):  # bad input: its one-line message, as in-process
                    raise exc
                raise RuntimeError(f"rollout worker {w} failed:\n{tb}") from exc
        return [payload for _, payload in replies]

    def _call(self, workers: Sequence[int], method: str, *args, **kwargs) -> list[Any]:
        """``method(*args, **kwargs)`` on each worker's runner, all at once; one reply per worker."""
        self._send(workers, method, *args, **kwargs)
        return self._receive(workers)

    def _call_per_env(self, indices, method: str, *args, **kwargs) -> list[Any]:
        """A ``VecEnv`` method whose reply is a list per environment: each worker's one-env list, joined."""
        return [value for reply in self._call(list(self._get_indices(indices)), method, *args, **kwargs) for value in reply]

    # -- the fast path ----------------------------------------------------------------------
    def collect_segments(self, actor: ActorSnapshot, n_steps: int, key: tuple[int, ...]) -> list[Segment]:
        """Every worker plays ``n_steps`` with ``actor``, all at once; one segment per worker."""
        return self._call(range(self.num_envs), "collect", actor, n_steps, key)

    # -- SB3 VecEnv -------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        obs = np.concatenate(self._call(range(self.num_envs), "reset"))
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        for w in range(self.num_envs):
            self._send([w], "step", actions[w : w + 1])

    def step_wait(self):
        results = self._receive(range(self.num_envs))
        obs, rewards, dones, infos = zip(*results)
        return np.concatenate(obs), np.concatenate(rewards), np.concatenate(dones), [i for info in infos for i in info]

    def close(self) -> None:
        if self.closed:
            return
        for w, process in enumerate(self.processes):
            if process.is_alive():
                try:
                    self._send([w], "close")
                    self.remotes[w].recv()
                except (BrokenPipeError, EOFError):
                    pass
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        self.closed = True

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return self._call_per_env(indices, "get_attr", attr_name)

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        self._call(list(self._get_indices(indices)), "set_attr", attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return self._call_per_env(indices, "env_method", method_name, *method_args, **method_kwargs)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices=None) -> list[bool]:
        return self._call_per_env(indices, "env_is_wrapped", wrapper_class)
