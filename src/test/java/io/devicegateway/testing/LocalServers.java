package io.devicegateway.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;

/**
 * Real Kafka (KRaft, separate JVM), Mosquitto and Redis on free loopback ports, for tests, the local run and
 * the benchmark. No Docker: Mosquitto and Redis come from Debian packages, Kafka from the jars that
 * {@code local/kafka/pom.xml} resolves into {@code .cache/kafka-libs}.
 */
public final class LocalServers implements AutoCloseable {

    public static final List<String> TOPICS = List.of("iot.telemetry", "iot.events", "iot.dlq", "iot.presence",
            "iot.commands", "iot.command-results", "iot.registry");

    public final Path workDir;
    public final Mosquitto mosquitto;
    public final Redis redis;
    public final Kafka kafka;

    private LocalServers(Path workDir, int mqttInflight) {
        this.workDir = workDir;
        this.mosquitto = new Mosquitto(workDir.resolve("mosquitto"), mqttInflight);
        this.redis = new Redis(workDir.resolve("redis"));
        this.kafka = new Kafka(workDir.resolve("kafka"));
    }

    /** Starts all three servers, Mosquitto with its default settings; stops them again if any fails to come up. */
    public static LocalServers start(String name) {
        return start(name, 0);
    }

    /**
     * @param mqttInflight Mosquitto's {@code max_inflight_messages} (QoS 1 messages it sends a 3.1.1 client before
     *                     waiting for PUBACKs), or 0 for Mosquitto's default (20)
     */
    public static LocalServers start(String name, int mqttInflight) {
        return startWith(name, mqttInflight, m -> {
        });
    }

    /** Like {@link #start(String, int)}, letting the caller adjust Mosquitto before it starts. */
    public static LocalServers startWith(String name, int mqttInflight, java.util.function.Consumer<Mosquitto> tune) {
        return startWith(name, mqttInflight, tune, k -> {
        });
    }

    /** Like {@link #startWith(String, int, java.util.function.Consumer)}, also adjusting Kafka before it starts. */
    public static LocalServers startWith(String name, int mqttInflight, java.util.function.Consumer<Mosquitto> tune,
            java.util.function.Consumer<Kafka> kafkaTune) {
        try {
            Path dir = Files.createDirectories(Paths.get("target", "servers").toAbsolutePath())
                    .resolve(name + "-" + UUID.randomUUID().toString().substring(0, 8));
            LocalServers servers = new LocalServers(Files.createDirectories(dir), mqttInflight);
            tune.accept(servers.mosquitto);
            kafkaTune.accept(servers.kafka);
            try {
                servers.kafka.start(); // slowest first, the others start while it formats
                servers.mosquitto.start();
                servers.redis.start();
                servers.kafka.awaitReady(TOPICS);
            } catch (RuntimeException e) {
                servers.close();
                throw e;
            }
            Runtime.getRuntime().addShutdownHook(new Thread(servers::close));
            return servers;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Quarkus configuration pointing the gateway at these servers. */
    public Map<String, String> gatewayConfig() {
        return Map.of(
                "gateway.mqtt.host", "127.0.0.1",
                "gateway.mqtt.port", Integer.toString(mosquitto.port),
                "kafka.bootstrap.servers", kafka.bootstrapServers(),
                "quarkus.redis.hosts", "redis://127.0.0.1:" + redis.port);
    }

    @Override
    public void close() {
        kafka.stop(false);
        mosquitto.stop();
        redis.stop();
    }

    /** Ports handed out by this process: the kernel may offer a just-closed port again (seen: Kafka's broker and
     * controller listeners got the same one, and its storage format refused the configuration). */
    private static final java.util.Set<Integer> HANDED_OUT = java.util.concurrent.ConcurrentHashMap.newKeySet();

    public static int freePort() {
        for (int attempt = 0; ; attempt++) {
            try (ServerSocket socket = new ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress())) {
                socket.setReuseAddress(true);
                int port = socket.getLocalPort();
                if (HANDED_OUT.add(port) || attempt >= 100) {
                    return port;
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    static void awaitPort(int port, Duration timeout, Process process, String what) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            if (process != null && !process.isAlive()) {
                throw new IllegalStateException(what + " exited with " + process.exitValue() + " before listening");
            }
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", port), 200);
                return;
            } catch (IOException notYet) {
                pause(50);
            }
        }
        throw new IllegalStateException(what + " did not listen on port " + port + " within " + timeout);
    }

    public static void pause(long millis) {
        try {
            Thread.sleep(millis); // polling an external process, not test synchronisation
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    static Process launch(List<String> command, Path dir, String logName) {
        try {
            return new ProcessBuilder(command).directory(dir.toFile())
                    .redirectErrorStream(true).redirectOutput(dir.resolve(logName).toFile()).start();
        } catch (IOException e) {
            throw new IllegalStateException("Cannot start " + command.get(0)
                    + " (run `make deps` or see README: Tests)", e);
        }
    }

    public static void stopProcess(Process process, boolean kill) {
        if (process == null || !process.isAlive()) {
            return;
        }
        if (kill) {
            process.destroyForcibly();
        } else {
            process.destroy();
        }
        try {
            if (!process.waitFor(20, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Mosquitto, anonymous, loopback only, in-memory unless {@link Mosquitto#persistent}. */
    public static final class Mosquitto {
        public final int port = freePort();
        private final Path dir;
        private final int inflight;
        private Process process;
        /** Keep sessions and queued messages on disk across restarts (set before start; broker-restart scenarios). */
        public volatile boolean persistent;
        /**
         * Mosquitto's {@code max_queued_messages} per session, or 0 for its default (1000). Only tests about long
         * outages raise it: with the default, a session holds at most 1000 messages beyond its in-flight window.
         */
        public volatile int maxQueuedMessages;
        /** Extra mosquitto.conf lines (TLS listeners, plugins), set before start. */
        public final List<String> extraConfig = new ArrayList<>();

        /** Process id while running, -1 otherwise. */
        public synchronized long pid() {
            return process != null && process.isAlive() ? process.pid() : -1;
        }

        Mosquitto(Path dir, int inflight) {
            this.dir = dir;
            this.inflight = inflight;
        }

        public synchronized void start() {
            try {
                Files.createDirectories(dir);
                Files.writeString(dir.resolve("mosquitto.conf"), String.join("\n",
                        "listener " + port + " 127.0.0.1",
                        "allow_anonymous true",
                        persistent ? "persistence true" : "persistence false",
                        persistent ? "persistence_location " + dir.toAbsolutePath() + "/" : "",
                        persistent ? "autosave_interval 1" : "",
                        "log_dest stderr",
                        "log_type error",
                        "log_type warning",
                        // defaults unless a test is about a setting
                        maxQueuedMessages > 0 ? "max_queued_messages " + maxQueuedMessages : "",
                        inflight > 0 ? "max_inflight_messages " + inflight : "",
                        String.join("\n", extraConfig),
                        // diagnostics only (e.g. "log_type debug" to see every packet id sent and acknowledged)
                        System.getProperty("mosquitto.extra-config", "").replace(";", "\n"),
                        "") );
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            process = launch(List.of(binary("mosquitto"), "-c", dir.resolve("mosquitto.conf").toString()), dir,
                    "mosquitto.log");
            awaitPort(port, Duration.ofSeconds(10), process, "mosquitto");
        }

        /** SIGKILL: the broker dies without publishing last wills or closing sessions. */
        public synchronized void kill() {
            stopProcess(process, true);
        }

        public synchronized void stop() {
            stopProcess(process, false);
        }

        public String uri() {
            return "tcp://127.0.0.1:" + port;
        }
    }

    /** Redis without persistence. */
    public static final class Redis {
        public final int port = freePort();
        private final Path dir;
        /** Extra redis-server arguments (TLS, ACL users, cluster mode), set before start. */
        public final List<String> extraArgs = new ArrayList<>();
        /** Serve only TLS on {@link #port} (plaintext off); the TLS files go into {@link #extraArgs}. */
        public volatile boolean tlsOnly;
        private Process process;

        /** Process id while running, -1 otherwise. */
        public synchronized long pid() {
            return process != null && process.isAlive() ? process.pid() : -1;
        }

        public Redis(Path dir) {
            this.dir = dir;
        }

        public synchronized void start() {
            try {
                Files.createDirectories(dir);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            List<String> command = new ArrayList<>(List.of(binary("redis-server"), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no"));
            command.addAll(tlsOnly ? List.of("--port", "0", "--tls-port", Integer.toString(port))
                    : List.of("--port", Integer.toString(port)));
            command.addAll(extraArgs);
            process = launch(command, dir, "redis.log");
            awaitPort(port, Duration.ofSeconds(10), process, "redis-server");
        }

        public synchronized void stop() {
            stopProcess(process, false);
        }
    }

    /**
     * A Redis Cluster of three masters (no replicas) on free loopback ports: three redis-server processes in
     * cluster mode joined by {@code redis-cli --cluster create}. Starts in about a second.
     */
    public static final class RedisCluster implements AutoCloseable {
        public final List<Redis> nodes = new ArrayList<>();

        public static RedisCluster start(String name) {
            RedisCluster cluster = new RedisCluster();
            try {
                Path dir = Files.createDirectories(Paths.get("target", "servers").toAbsolutePath()
                        .resolve(name + "-" + UUID.randomUUID().toString().substring(0, 8)));
                for (int i = 0; i < 3; i++) {
                    Redis node = new Redis(dir.resolve("node-" + i));
                    node.extraArgs.addAll(List.of("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", "5000"));
                    cluster.nodes.add(node);
                    node.start();
                }
                List<String> create = new ArrayList<>(List.of(binary("redis-cli"), "--cluster", "create"));
                cluster.nodes.forEach(n -> create.add("127.0.0.1:" + n.port));
                create.addAll(List.of("--cluster-replicas", "0", "--cluster-yes"));
                Process p = launch(create, dir, "cluster-create.log");
                if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
                    throw new IllegalStateException("redis-cli --cluster create failed, see "
                            + dir.resolve("cluster-create.log"));
                }
                for (Redis node : cluster.nodes) {
                    awaitClusterOk(node, dir);
                }
                Runtime.getRuntime().addShutdownHook(new Thread(cluster::close));
                return cluster;
            } catch (IOException e) {
                cluster.close();
                throw new UncheckedIOException(e);
            } catch (InterruptedException e) {
                cluster.close();
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            } catch (RuntimeException e) {
                cluster.close();
                throw e;
            }
        }

        private static void awaitClusterOk(Redis node, Path dir) throws IOException, InterruptedException {
            long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
            while (System.nanoTime() < deadline) {
                Process info = launch(List.of(binary("redis-cli"), "-p", Integer.toString(node.port), "cluster",
                        "info"), dir, "cluster-info.log");
                if (info.waitFor(5, TimeUnit.SECONDS)
                        && Files.readString(dir.resolve("cluster-info.log")).contains("cluster_state:ok")) {
                    return;
                }
                pause(100);
            }
            throw new IllegalStateException("Redis Cluster node " + node.port + " not ok within 20 s");
        }

        /** {@code quarkus.redis.hosts}: every node (the client discovers the slots from any of them). */
        public String hosts() {
            return String.join(",", nodes.stream().map(n -> "redis://127.0.0.1:" + n.port).toList());
        }

        @Override
        public void close() {
            nodes.forEach(Redis::stop);
        }
    }

    /** Single-node KRaft Kafka in its own JVM; restartable on the same ports and data directory. */
    public static final class Kafka {
        public final int port = freePort();
        public final int controllerPort = freePort();
        private final Path dir;
        private Process process;
        /** Extra broker settings (server.properties), applied when the broker is first formatted. */
        public final Properties extraConfig = new Properties();
        /** A JMX port for the broker's own metrics (benchmarks read its request counts), 0 = none; set before start. */
        public volatile int jmxPort;
        private boolean formatted;

        /** Process id while running, -1 otherwise. */
        public synchronized long pid() {
            return process != null && process.isAlive() ? process.pid() : -1;
        }

        Kafka(Path dir) {
            this.dir = dir;
        }

        public String bootstrapServers() {
            return "127.0.0.1:" + port;
        }

        public synchronized void start() {
            try {
                startProcess();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        private void startProcess() throws IOException {
            Path libs = libsDir();
            String classpath = libs.toAbsolutePath() + "/*";
            try {
                Files.createDirectories(dir.resolve("data"));
                if (!formatted) {
                    Properties p = new Properties();
                    p.setProperty("process.roles", "broker,controller");
                    p.setProperty("node.id", "1");
                    p.setProperty("controller.quorum.voters", "1@127.0.0.1:" + controllerPort);
                    p.setProperty("listeners",
                            "PLAINTEXT://127.0.0.1:" + port + ",CONTROLLER://127.0.0.1:" + controllerPort);
                    p.setProperty("advertised.listeners", "PLAINTEXT://127.0.0.1:" + port);
                    p.setProperty("controller.listener.names", "CONTROLLER");
                    p.setProperty("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT");
                    p.setProperty("inter.broker.listener.name", "PLAINTEXT");
                    p.setProperty("log.dirs", dir.resolve("data").toAbsolutePath().toString());
                    p.setProperty("num.partitions", "4");
                    p.setProperty("offsets.topic.replication.factor", "1");
                    p.setProperty("offsets.topic.num.partitions", "4");
                    p.setProperty("transaction.state.log.replication.factor", "1");
                    p.setProperty("transaction.state.log.min.isr", "1");
                    p.setProperty("share.coordinator.state.topic.replication.factor", "1");
                    p.setProperty("share.coordinator.state.topic.min.isr", "1");
                    p.setProperty("min.insync.replicas", "1");
                    p.setProperty("group.initial.rebalance.delay.ms", "0");
                    p.setProperty("auto.create.topics.enable", "true");
                    p.setProperty("log.flush.interval.messages", "9223372036854775807");
                    p.putAll(extraConfig);
                    try (var out = Files.newOutputStream(dir.resolve("server.properties"))) {
                        p.store(out, "device-gateway local Kafka");
                    }
                    Process format = launch(List.of(java(), "-cp", classpath, "kafka.tools.StorageTool", "format",
                            "-t", "dgwLocalCluster0000001", "-c", dir.resolve("server.properties").toString()),
                            dir, "format.log");
                    if (!format.waitFor(60, TimeUnit.SECONDS) || format.exitValue() != 0) {
                        throw new IllegalStateException("kafka-storage format failed, see " + dir.resolve("format.log"));
                    }
                    formatted = true;
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
            List<String> cmd = new ArrayList<>(List.of(java(), "-Xmx512m", "-Xms128m", "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1", "-Dlog4j2.configurationFile=" + log4jConfig()));
            if (jmxPort > 0) {
                cmd.addAll(List.of("-Dcom.sun.management.jmxremote.port=" + jmxPort,
                        "-Dcom.sun.management.jmxremote.rmi.port=" + jmxPort,
                        "-Dcom.sun.management.jmxremote.host=127.0.0.1", "-Djava.rmi.server.hostname=127.0.0.1",
                        "-Dcom.sun.management.jmxremote.authenticate=false", "-Dcom.sun.management.jmxremote.ssl=false"));
            }
            cmd.addAll(List.of("-cp", classpath, "kafka.Kafka", dir.resolve("server.properties").toString()));
            process = launch(cmd, dir, "kafka.log");
            awaitPort(port, Duration.ofSeconds(60), process, "kafka");
        }

        /** Waits until the broker answers and the given topics exist. */
        public void awaitReady(List<String> topics) {
            try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers()))) {
                admin.describeCluster().nodes().get(60, TimeUnit.SECONDS);
                List<NewTopic> newTopics = new ArrayList<>();
                for (String t : topics) {
                    NewTopic topic = new NewTopic(t, 4, (short) 1);
                    if (t.equals("iot.presence") || t.equals("iot.registry")) {
                        topic.configs(Map.of("cleanup.policy", "compact"));
                    }
                    newTopics.add(topic);
                }
                var existing = admin.listTopics().names().get(30, TimeUnit.SECONDS);
                newTopics.removeIf(t -> existing.contains(t.name()));
                if (!newTopics.isEmpty()) {
                    admin.createTopics(newTopics).all().get(30, TimeUnit.SECONDS);
                }
            } catch (Exception e) {
                throw new IllegalStateException("Kafka on " + bootstrapServers() + " not ready, see "
                        + dir.resolve("kafka.log"), e);
            }
        }

        /** Stops the broker: SIGTERM (controlled shutdown) or SIGKILL. */
        public synchronized void stop(boolean kill) {
            stopProcess(process, kill);
        }

        public synchronized boolean running() {
            return process != null && process.isAlive();
        }

        private Path log4jConfig() throws IOException {
            Path file = dir.resolve("log4j2.properties");
            Files.writeString(file, String.join("\n",
                    "rootLogger.level=WARN",
                    "rootLogger.appenderRef.out.ref=out",
                    "appender.out.type=Console",
                    "appender.out.name=out",
                    "appender.out.layout.type=PatternLayout",
                    "appender.out.layout.pattern=%d %p %c{1} %m%n",
                    ""));
            return file.toAbsolutePath();
        }
    }

    /** CPU time (user + system) a process has used so far, in milliseconds; 0 when it cannot be read. */
    public static long cpuMillis(long pid) {
        try {
            return cpuMillisOf(Files.readString(Paths.get("/proc", Long.toString(pid), "stat")));
        } catch (IOException | RuntimeException e) {
            return 0;
        }
    }

    /** utime + stime of a /proc {@code stat} line (a process's or a thread's), in ms. */
    private static long cpuMillisOf(String stat) {
        String[] fields = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        long ticks = Long.parseLong(fields[11]) + Long.parseLong(fields[12]); // utime, stime
        return ticks * 10; // USER_HZ is 100 on Linux
    }

    /**
     * CPU time (user + system, ms) of each thread of a process, grouped by thread name with trailing numbers removed
     * ("C2 CompilerThread0" and "C2 CompilerThread1" are one group, "vert.x-eventloop-thread-0" is
     * "vert.x-eventloop-thread-"). Threads that ended are not counted. Empty when /proc cannot be read.
     */
    public static Map<String, Long> cpuMillisByThreadGroup(long pid) {
        Map<String, Long> groups = new java.util.TreeMap<>();
        try (var tasks = Files.list(Paths.get("/proc", Long.toString(pid), "task"))) {
            for (Path task : (Iterable<Path>) tasks::iterator) {
                try {
                    String stat = Files.readString(task.resolve("stat"));
                    String name = stat.substring(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
                    groups.merge(name.replaceAll("[#0-9]+$", "").trim(), cpuMillisOf(stat), Long::sum);
                } catch (IOException | RuntimeException e) {
                    // the thread ended between the listing and the read
                }
            }
        } catch (IOException | RuntimeException e) {
            return Map.of();
        }
        return groups;
    }

    /** Resident set size of a process in MiB, 0 when it cannot be read. */
    public static long rssMiB(long pid) {
        try {
            for (String line : Files.readAllLines(Paths.get("/proc", Long.toString(pid), "status"))) {
                if (line.startsWith("VmRSS:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024;
                }
            }
        } catch (IOException | RuntimeException e) {
            return 0;
        }
        return 0;
    }

    static Path libsDir() {
        String configured = System.getProperty("kafka.libs.dir", System.getenv("KAFKA_LIBS_DIR"));
        Path libs = configured != null ? Paths.get(configured) : findUp(Paths.get(".cache", "kafka-libs"));
        if (libs == null || !Files.isDirectory(libs)) {
            throw new IllegalStateException("Kafka broker jars not found in .cache/kafka-libs: run `make deps` "
                    + "(mvn -f local/kafka/pom.xml dependency:copy-dependencies)");
        }
        return libs;
    }

    private static Path findUp(Path relative) {
        Path dir = Paths.get("").toAbsolutePath();
        while (dir != null) {
            if (Files.isDirectory(dir.resolve(relative))) {
                return dir.resolve(relative);
            }
            dir = dir.getParent();
        }
        return null;
    }

    public static String java() {
        return Paths.get(System.getProperty("java.home"), "bin", "java").toString();
    }

    public static String binary(String name) {
        for (String dir : List.of("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")) {
            if (Files.isExecutable(Paths.get(dir, name))) {
                return Paths.get(dir, name).toString();
            }
        }
        return name;
    }
}
