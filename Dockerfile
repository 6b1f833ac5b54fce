# The orchestrator's CLI and worker in one image: `docker run IMAGE runs`, or as a worker
# `docker run IMAGE worker --id build-1` (see compose.yaml and the README's "Shared workers").
FROM python:3.11-slim

# git does all repository work (clone, worktrees, commits, push); ssh reaches ssh remotes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A user of its own: the agents and verification commands a worker runs never run as root.
RUN useradd --create-home --uid 1000 orchestrator

WORKDIR /opt/orchestrator
COPY pyproject.toml README.md ./
COPY config ./config
COPY core ./core
COPY rag ./rag
COPY tui ./tui
COPY verify ./verify
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER orchestrator
# The home: clones, worktrees, indexes, caches (and the SQLite file when no state.url is set).
ENV ORCHESTRATOR_HOME=/home/orchestrator/home \
    PYTHONUNBUFFERED=1
RUN mkdir -p /home/orchestrator/home
VOLUME ["/home/orchestrator/home"]
WORKDIR /home/orchestrator

ENTRYPOINT ["orchestrator"]
CMD ["--help"]
