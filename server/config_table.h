/* Every option of beacond, in one table. Flags (--name-with-dashes),
 * environment variables (BEACON_NAME_IN_CAPS), config-file keys (name or
 * name-with-dashes), validation, --help and --print-config all come from
 * here.
 *
 * X(name, type, default, min, max, help)
 *   STR: text; UINT: unsigned decimal in [min, max]; BOOL: true/false;
 *   DUR: Go duration, stored in milliseconds, in [min, max] ms. */
#pragma once

#define CONFIG_TABLE(X)                                                       \
	X(config_file, STR, "", 0, 0,                                         \
	  "JSON file of options (keys as below, e.g. \"http_addr\")")         \
	X(node, STR, "", 0, 0, "this server's name (default: the host name)") \
	X(datacenter, STR, "dc1", 0, 0, "datacenter name")                    \
	X(data_dir, STR, "", 0, 0, "data directory (required unless --dev)")  \
	X(dev, BOOL, "false", 0, 0,                                           \
	  "single node with a temporary data directory, for trying Beacon")   \
	X(http_addr, STR, "127.0.0.1:8500", 0, 0, "HTTP API listen address")  \
	X(raft_addr, STR, "127.0.0.1:8300", 0, 0,                             \
	  "Raft listen and advertise address (keep it on a private network)") \
	X(initial_cluster, STR, "", 0, 0,                                     \
	  "initial servers as NAME=HOST:PORT,... (empty: a cluster of one)")  \
	X(join, STR, "", 0, 0,                                                \
	  "HTTP address of a member to join through (a new server)")          \
	X(leader_wait, DUR, "3s", 0, 60000,                                   \
	  "how long a request waits for a leader before 500 No cluster "      \
	  "leader")                                                           \
	X(raft_election_timeout, DUR, "500ms", 50, 60000,                     \
	  "Raft election timeout")                                            \
	X(raft_heartbeat, DUR, "100ms", 10, 10000, "Raft heartbeat interval") \
	X(snapshot_threshold, UINT, "65536", 16, 1000000000,                  \
	  "log entries between two snapshots")                                \
	X(snapshot_trailing, UINT, "8192", 16, 1000000000,                    \
	  "log entries kept after a snapshot")                                \
	X(tombstone_ttl, DUR, "15m", 0, 604800000,                            \
	  "keep KV tombstones (for blocking-query indexes) this long")        \
	X(check_output_interval, DUR, "30s", 0, 86400000,                     \
	  "write a check's output at most this often when only the output "   \
	  "changed")                                                          \
	X(cache_kib, UINT, "8192", 256, 16777216,                             \
	  "SQLite page cache of the state, in KiB")                           \
	X(http_max_conns, UINT, "4096", 16, 1000000,                          \
	  "maximum concurrent HTTP connections")                              \
	X(http_idle_timeout, DUR, "120s", 1000, 86400000,                     \
	  "close idle keep-alive HTTP connections after this long")           \
	X(http_max_conns_per_client, UINT, "200", 0, 1000000,                 \
	  "HTTP connections one client IP may hold (0: no limit)")            \
	X(http_rate_limit, UINT, "0", 0, 100000000,                           \
	  "requests per second one client IP may make (0: no limit)")         \
	X(http_rate_burst, UINT, "1000", 1, 100000000,                        \
	  "requests a client IP may make at once above --http-rate-limit")    \
	X(dns_addr, STR, "127.0.0.1:8600", 0, 0,                              \
	  "DNS listen address, UDP and TCP (\"\": no DNS)")                   \
	X(dns_domain, STR, "consul", 0, 0, "DNS domain served")               \
	X(dns_alt_domain, STR, "", 0, 0,                                      \
	  "a second DNS domain served (\"\": none)")                          \
	X(dns_only_passing, BOOL, "false", 0, 0,                              \
	  "DNS: leave out instances with a warning check too")                \
	X(dns_enable_truncate, BOOL, "true", 0, 0,                            \
	  "DNS: set TC when a UDP answer was cut to fit, so that resolvers "  \
	  "retry over TCP")                                                   \
	X(dns_udp_answer_limit, UINT, "3", 1, 4096,                           \
	  "DNS: most answers in a UDP reply of 512 bytes (no EDNS0)")         \
	X(dns_node_ttl, DUR, "0s", 0, 2147483000,                             \
	  "DNS TTL of node, addr, NS and PTR records")                        \
	X(dns_service_ttl, STR, "", 0, 0,                                     \
	  "DNS TTLs of services: NAME=DUR,PREFIX*=DUR,*=DUR (default 0s)")    \
	X(dns_recursor, STR, "", 0, 0,                                        \
	  "DNS: forward other names to this HOST[:PORT] (\"\": refuse them)") \
	X(encrypt_key_file, STR, "", 0, 0,                                    \
	  "file of secret keys, one base64 key a line, the first seals "      \
	  "(beacon keygen)")                                                  \
	X(encrypt_key, STR, "", 0, 0,                                         \
	  "base64 secret key (prefer BEACON_ENCRYPT_KEY to the flag)")        \
	X(acl_enabled, BOOL, "false", 0, 0, "enforce ACL tokens")             \
	X(acl_default_policy, STR, "allow", 0, 0,                             \
	  "ACL policy without a matching rule: allow or deny")                \
	X(acl_token, STR, "", 0, 0,                                           \
	  "token this server sends on its own calls (joining with ACLs on; "  \
	  "prefer BEACON_ACL_TOKEN)")                                         \
	X(tls_cert, STR, "", 0, 0,                                            \
	  "PEM certificate: serve the HTTP API over HTTPS only")              \
	X(tls_key, STR, "", 0, 0, "PEM private key of --tls-cert")            \
	X(tls_ca, STR, "", 0, 0,                                              \
	  "PEM CA bundle: verify servers (forwarding) and clients")           \
	X(tls_verify_incoming, BOOL, "false", 0, 0,                           \
	  "require a client certificate signed by --tls-ca")                  \
	X(audit_log, STR, "", 0, 0,                                           \
	  "append a JSON line per write and secret read to this file")        \
	X(log_level, STR, "info", 0, 0, "debug, info, warn or error")         \
	X(log_format, STR, "text", 0, 0, "text or json")
