# Nightshift on Debian 12, built from source.
FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/
RUN scripts/install-deps.sh
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNIGHTSHIFT_TESTS=OFF \
 && cmake --build build -j"$(nproc)"

FROM debian:12-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libsqlite3-0 libyaml-cpp0.7 libspdlog1.10 libdate-tz3 libfmt9 tzdata curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/nightshift /usr/local/bin/nightshift
COPY docker/nightshift.yaml /etc/nightshift/nightshift.yaml
WORKDIR /var/lib/nightshift
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/api/v1/health || exit 1
CMD ["nightshift", "serve", "--config", "/etc/nightshift/nightshift.yaml"]
