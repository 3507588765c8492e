"""SHRED: the fully supervised composite L_sim + lambda_1 L_KL + lambda_2 L_cls."""

from __future__ import annotations

import torch
from pytorch_metric_learning.utils import common_functions as c_f

from ..regularizers.empirical_kl_regularizer import EmpiricalKLRegularizer
from ..semantic_distances.base import SemanticDistance
from ..utils import check_embeddings
from .semantic_distance_loss import SemanticDistanceLoss, check_count, check_number


class SHREDLoss(SemanticDistanceLoss):
    """SHRED (Arponen & Bishop, arXiv 2005.04917): semantic distance matching, the
    empirical KL term and a softmax cross-entropy on a linear classifier placed on
    the continuous code::

        L = lambda_sim * L_sim + lambda_kl * L_KL + lambda_cls * L_cls

    ``L_KL`` is an ``EmpiricalKLRegularizer`` used as PML's ``embedding_regularizer``
    (weight ``embedding_reg_weight = lambda_kl``), so the loss dict reports
    ``loss`` (L_sim), ``cls_loss`` and ``embedding_reg_loss`` separately.
    Setting a weight to 0 drops that term, which gives the paper's ablations
    (``lambda_sim=0, lambda_kl=0``: L_cls only; ``lambda_cls=0``: SHREWD).

    The classifier is a parameter of this loss, as in PML's ``ArcFaceLoss``: hand
    ``loss_fn.parameters()`` to an optimizer. Passing ``classifier=model.classifier``
    shares a head the model already owns; it is then *not* registered here, so the
    optimizer must get it through the model.

    Labels are class ids, used both by the provider and by the classifier (a tensor, or a
    list / numpy array of integers).

    dtypes: like PML's ``ArcFaceLoss``, the classifier follows the codes' dtype (float32,
    float64, float16, bfloat16). Unlike ``ArcFaceLoss``, which overwrites its weights with a
    cast copy, the parameters keep their own dtype (an optimizer's float32 master weights stay
    float32): they are cast differentiably for the forward pass, so their gradients arrive in
    their own dtype. The softmax cross-entropy is computed in float32 at least. Codes whose
    width is not ``embedding_size`` raise a ``ValueError``.

    Pairs, tau and the numerics of the L_sim part: see :class:`SemanticDistanceLoss`.

    Example::

        loss_fn = SHREDLoss(HierarchyDistance.cifar100(), num_classes=100, embedding_size=64)
        optimizer = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()])
        loss = loss_fn(codes, class_ids)
    """

    def __init__(
        self,
        semantic_distance: SemanticDistance | None,
        num_classes: int,
        embedding_size: int,
        lambda_sim: float = 1.0,
        lambda_kl: float = 1.0,
        lambda_cls: float = 1.0,
        classifier: torch.nn.Module | None = None,
        alpha: float = 0.1,
        beta: float = 0.1,
        **kwargs,
    ):
        num_classes = check_count("num_classes", num_classes)
        embedding_size = check_count("embedding_size", embedding_size)
        lambda_sim = check_number("lambda_sim", lambda_sim, low=0.0)
        lambda_kl = check_number("lambda_kl", lambda_kl, low=0.0)
        lambda_cls = check_number("lambda_cls", lambda_cls, low=0.0)
        alpha = check_number("alpha", alpha, low=0.0, low_inclusive=False)
        beta = check_number("beta", beta, low=0.0, low_inclusive=False)
        if classifier is not None:
            if not isinstance(classifier, torch.nn.Module):
                raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
            shape = getattr(classifier, "in_features", None), getattr(classifier, "out_features", None)
            if isinstance(classifier, torch.nn.Linear) and shape != (embedding_size, num_classes):
                raise ValueError(
                    f"classifier maps {shape[0]} -> {shape[1]} features, but embedding_size={embedding_size} "
                    f"and num_classes={num_classes}"
                )
        if lambda_sim != 0 and semantic_distance is None:
            raise ValueError("SHREDLoss needs a semantic_distance provider unless lambda_sim == 0")
        if lambda_kl != 0 and "embedding_regularizer" not in kwargs:
            kwargs["embedding_regularizer"] = EmpiricalKLRegularizer(alpha=alpha, beta=beta)
            kwargs["embedding_reg_weight"] = lambda_kl
        super().__init__(semantic_distance or _unused_provider, **kwargs)
        self.num_classes = int(num_classes)
        self.embedding_size = int(embedding_size)
        self.lambda_sim = float(lambda_sim)
        self.lambda_kl = float(lambda_kl)
        self.lambda_cls = float(lambda_cls)
        if classifier is None:
            self.classifier = torch.nn.Linear(embedding_size, num_classes)
        else:
            # Owned by the model: keep it out of this module's parameters and state_dict.
            object.__setattr__(self, "classifier", classifier)
        self.add_to_recordable_attributes(
            list_of_names=["lambda_sim", "lambda_kl", "lambda_cls"], is_stat=False
        )

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if labels is None:
            raise ValueError("SHREDLoss needs class-id labels")
        if self.lambda_sim != 0:
            loss_dict = super().compute_loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
            loss_dict["loss"]["losses"] = self.lambda_sim * loss_dict["loss"]["losses"]
        else:
            check_embeddings(embeddings, "embeddings")  # L_sim, which checks them, is off
            loss_dict = {"loss": self.zero_loss()}
        loss_dict["cls_loss"] = {
            "losses": self.lambda_cls * self.classification_loss(embeddings, labels),
            "indices": c_f.torch_arange_from_size(embeddings),
            "reduction_type": "element",
        }
        return loss_dict

    def classification_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample softmax cross-entropy of the classifier on the continuous codes."""
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
            raise IndexError(f"SHREDLoss got class id {bad}, outside [0, {self.num_classes - 1}]")
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"SHREDLoss was built for codes of embedding_size={self.embedding_size} bits, got codes "
                f"of shape {tuple(embeddings.shape)}"
            )
        logits = apply_in_dtype(self.classifier, embeddings)
        # Half-precision softmax is unstable: compute it in float32 at least.
        ce_dtype = torch.promote_types(logits.dtype, torch.float32)
        ce = torch.nn.functional.cross_entropy(logits.to(ce_dtype), labels.long(), reduction="none")
        return ce.to(embeddings.dtype)

    def _sub_loss_names(self):
        return ["loss", "cls_loss"]


def apply_in_dtype(module: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``module(inputs)`` with the module's floating-point parameters and buffers in ``inputs``'
    dtype, cast differentiably (the module itself is left as it is; gradients reach its
    parameters in their own dtype)."""
    tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    if all(t.dtype == inputs.dtype or not t.is_floating_point() for t in tensors.values()):
        return module(inputs)
    cast = {name: t.to(inputs.dtype) if t.is_floating_point() else t for name, t in tensors.items()}
    return torch.func.functional_call(module, cast, (inputs,))


def _unused_provider(ids_a: torch.Tensor, ids_b: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("SHREDLoss with lambda_sim == 0 never computes semantic distances")
