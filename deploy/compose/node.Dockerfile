# kes-node and kes-cluster on an empty root: the glibc release binaries plus exactly the
# libraries `ldd` lists for them, staged by scripts/compose-up.sh at their host paths
# (rootfs/usr/local/bin/*, rootfs/lib/x86_64-linux-gnu/*, rootfs/lib64/ld-linux-x86-64.so.2).
# No base image, so nothing is pulled. There is no shell either: the health check is
# `kes-cluster health`, one of our own subcommands.
FROM scratch
COPY rootfs/ /
EXPOSE 7373 7473
ENTRYPOINT ["/usr/local/bin/kes-node"]
CMD ["--config", "/etc/kes/node.yaml", "--data-dir", "/var/lib/kes"]
