"""The vpMoE student: config, megatron-core model build and forward API, CPU adaptations (docs/student_model.md)."""
