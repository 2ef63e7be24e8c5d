"""Flows trained by parts (Bhatt & Inouye): a flow split into gradient-isolated parts with truncated
objectives, the training schedules (end to end, sequential, alternate, alternate + fine-tuning),
and one process per part (:mod:`cnflib.parts.distributed`)."""
from cnflib.parts.distributed import PipelineConfig, pipeline_train, run_local
from cnflib.parts.schedules import (SCHEDULES, SPLITS, ScheduleResult, evaluate_parts, part_bounds, part_forward,
                                    part_loss, round_robin, schedule_table, time_to_target, train_schedule,
                                    truncated_nll)

__all__ = [
    "PipelineConfig", "pipeline_train", "run_local",
    "SCHEDULES", "SPLITS", "ScheduleResult", "evaluate_parts", "part_bounds", "part_forward", "part_loss",
    "round_robin", "schedule_table", "time_to_target", "train_schedule", "truncated_nll",
]
