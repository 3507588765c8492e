from .empirical_kl_regularizer import EmpiricalKLRegularizer

__all__ = ["EmpiricalKLRegularizer"]
