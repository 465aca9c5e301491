"""Command-line entry points: flag definitions and orchestration only; the logic lives in bert_tf."""
