FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY detectors ./detectors
RUN pip install --no-cache-dir .
USER nobody
ENV WATCHKEEPER_DATA_DIR=/tmp/watchkeeper
ENTRYPOINT []
CMD ["watchkeeper", "worker"]
