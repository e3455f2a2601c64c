"""Compression methods as strategies of the one training loop (one file per algorithm of the paper)."""
from .base import METHODS, Method, build_method, register
from .iht import IterativeHardThresholding
from .oneshot import OneShot
from .trp import TrainedRankPruning
from .tt import TensorTrain

__all__ = ["METHODS", "Method", "build_method", "register", "IterativeHardThresholding", "OneShot",
           "TrainedRankPruning", "TensorTrain"]
