# Debian's prometheus binary on an empty root, staged by scripts/compose-up.sh like the node
# image: the binary, the libraries `ldd` lists, and the web UI files of the Debian package
# (/usr/share/prometheus/web, with its symlinks into /usr/share/javascript resolved).
FROM scratch
COPY rootfs/ /
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=0.0.0.0:9090"]
