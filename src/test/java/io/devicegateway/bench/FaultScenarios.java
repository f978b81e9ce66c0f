package io.devicegateway.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.LocalServers;

/**
 * The fault scenarios of a Kubernetes day, each against its own real servers and packaged gateway processes,
 * counting every message: the broker-acknowledged QoS 1 publishes of simulated devices must all reach Kafka.
 * Prints one JSON line per scenario and a table (scenario, sent, received, missing, duplicates, out of order,
 * recovery, what the broker itself dropped, note). Every wait is bounded; the whole run takes about ten minutes
 * ({@code kafka-down-3min} alone over four) and stops by itself. {@code make faults}.
 *
 * <p>Mosquitto runs with its <b>default settings</b> in every scenario ({@code max_inflight_messages} 20 for 3.1.1
 * clients, the client's Receive Maximum for MQTT 5 ones, {@code max_queued_messages} 1000 per session), because
 * that is what decides order and loss on a stock broker. Only the long Kafka outages raise
 * {@code max_queued_messages}: with the default 1000 a session holds at most 1000 messages beyond its in-flight
 * window, so during a multi-minute outage the broker itself would drop (after acknowledging them to the devices)
 * almost everything, whatever the gateway does.
 *
 * <p>Gateways run as pods do by default: no {@code gateway.mqtt.client-id}, so each leases {@code dgw-faults-<n>}
 * from Redis; each process has its own {@code HOSTNAME} (its instance id is {@code $HOSTNAME-<http port>}). Lease
 * TTL and adoption interval are shortened (5 s, 2 s) so the scenarios finish quickly.
 *
 * <p>Options: {@code faults.only} (comma-separated scenario names), {@code faults.rate} (msg/s of the original
 * scenarios, default 2000), {@code faults.max-queued} (diagnostic: Mosquitto {@code max_queued_messages} for every
 * scenario, to tell the broker's drops from the gateway's).
 */
public final class FaultScenarios {

    record Row(String scenario, long sent, long received, long missing, long duplicates, long outOfOrder,
            double recoverySeconds, long brokerDropped, String note) {

        String json() {
            return String.format(Locale.ROOT,
                    "{\"scenario\":\"%s\",\"sent\":%d,\"received\":%d,\"missing\":%d,\"duplicates\":%d,"
                            + "\"out_of_order\":%d,\"recovery_s\":%.2f,\"broker_dropped\":%d,\"note\":\"%s\"}",
                    scenario, sent, received, missing, duplicates, outOfOrder, recoverySeconds, brokerDropped,
                    note.replace("\\", "\\\\").replace("\"", "\\\""));
        }

        Row withNote(String more) {
            return new Row(scenario, sent, received, missing, duplicates, outOfOrder, recoverySeconds, brokerDropped,
                    note.isEmpty() ? more : note + "; " + more);
        }
    }

    private static final int DEVICES = 10;
    private static final Duration SETTLE = Duration.ofSeconds(20);
    /** Mosquitto max_queued_messages for the long Kafka outages only: above everything such an outage queues. */
    private static final int LONG_OUTAGE_QUEUE = 300_000;
    /** Rate and size of the gateway replacement scenarios. */
    private static final int REPLACE_RATE = 1_000;
    private static final long REPLACE_TOTAL = 20_000;
    /** How long gateway-stalled stops the gateway each time: longer than the kernel's socket buffers absorb. */
    private static final long STALL_MILLIS = Long.getLong("faults.stall-ms", 4_000);
    private static int rate;

    /** Servers, gateways, a publishing simulator and a Kafka verifier for one scenario. */
    static final class Stage implements AutoCloseable {
        final LocalServers servers;
        final List<GatewayProcess> gateways = new ArrayList<>();
        final Map<GatewayProcess, Path> logs = new HashMap<>();
        final Map<GatewayProcess, String> hostnames = new HashMap<>();
        /** Wall-clock instant of a gateway kill, for the kill -> will -> adoption timeline (0: none). */
        long killedAtMillis;
        final String runId = UUID.randomUUID().toString().substring(0, 6);
        final Set<String> devices = java.util.concurrent.ConcurrentHashMap.newKeySet();
        private int batch;
        final Map<String, String> config;
        final String name;
        final int maxQueued;
        DeviceSimulator simulator;
        KafkaVerifier verifier;
        /** Devices number their messages (MQTT 5 seq/seq-epoch): duplicate removal applies, duplicates must be 0. */
        boolean numbered;
        Thread publisher;
        private Duration publishBound = Duration.ofMinutes(3);

        /** @param maxQueued Mosquitto max_queued_messages, 0 for its default (1000) */
        Stage(String name, boolean persistentBroker, int maxQueued) {
            this.name = name;
            this.maxQueued = maxQueued;
            // inflight 0: the broker's default window; notice-level log so queue drops ("Outgoing messages are
            // being dropped for client ...") show in mosquitto.log (logging only, not behaviour)
            servers = LocalServers.startWith(name, 0, m -> {
                m.persistent = persistentBroker;
                m.maxQueuedMessages = maxQueued;
                m.extraConfig.add("log_type notice");
            });
            config = new LinkedHashMap<>(servers.gatewayConfig());
            config.put("gateway.mqtt.shared-group", "faults");
            config.put("gateway.mqtt.lease-ttl", "5s");
            config.put("gateway.mqtt.adoption-interval", "2s");
            config.put("gateway.grpc.auth.tokens", io.devicegateway.testing.Agents.tokensConfig());
        }

        /**
         * A gateway as a pod named {@code hostname} would run it: leased client id, {@code HOSTNAME} in its
         * environment. {@code httpPort} 0 picks a free one; the same hostname and port is the same instance id (a
         * container restarted in place), which takes its own lease back at once.
         */
        GatewayProcess gateway(String hostname, int httpPort) {
            Map<String, String> c = new LinkedHashMap<>(config);
            if (httpPort > 0) {
                c.put("quarkus.http.port", Integer.toString(httpPort));
            }
            Path log = servers.workDir.resolve(hostname + "-" + System.nanoTime() + ".log");
            GatewayProcess g = GatewayProcess.start(c, List.of("-Xmx256m"), log, Map.of("HOSTNAME", hostname));
            logs.put(g, log);
            hostnames.put(g, hostname);
            try {
                g.awaitReady(Duration.ofSeconds(60));
            } catch (RuntimeException e) {
                throw new IllegalStateException(e.getMessage() + ", see " + log, e);
            }
            return g;
        }

        String hostname(int i) {
            return name + "-" + i;
        }

        void startGateways(int count) {
            for (int i = 0; i < count; i++) {
                gateways.add(gateway(hostname(i), 0));
            }
        }

        /** Publishes perDevice messages from every device at the scenario rate, in the background. */
        void publish(long perDevice, int qos) {
            publish(perDevice, qos, rate);
        }

        void publish(long perDevice, int qos, int msgPerSecond) {
            // every batch has its own device ids, so sequence numbers never repeat
            simulator = new DeviceSimulator("127.0.0.1", servers.mosquitto.port, runId + "b" + batch++, DEVICES,
                    "devices/%s/telemetry", numbered);
            devices.addAll(simulator.deviceIds());
            if (verifier == null) {
                verifier = new KafkaVerifier(servers.kafka.bootstrapServers(), "iot.telemetry", devices);
            }
            long seconds = perDevice * DEVICES / Math.max(1, msgPerSecond);
            publishBound = Duration.ofSeconds(Math.max(180, seconds + 120));
            publisher = new Thread(() -> simulator.run(perDevice, 100, qos, msgPerSecond), "fault-publisher");
            publisher.start();
        }

        void awaitPublished() throws InterruptedException {
            publisher.join(publishBound.toMillis());
        }

        long acknowledged() {
            return simulator.acknowledged();
        }

        /** Waits (bounded) until the broker has acknowledged {@code count} messages of the current batch. */
        void awaitAcknowledged(long count, Duration bound) {
            long deadline = System.nanoTime() + bound.toNanos();
            while (simulator.acknowledged() < count && System.nanoTime() < deadline) {
                LocalServers.pause(10);
            }
        }

        /** The sequence numbers the broker has acknowledged so far, per device of the current batch. */
        Map<String, BitSet> acknowledgedNow() {
            Map<String, BitSet> snapshot = new HashMap<>();
            for (String d : simulator.deviceIds()) {
                snapshot.put(d, simulator.acknowledged(d));
            }
            return snapshot;
        }

        /** Waits until every acknowledged message arrived, or nothing new arrived for SETTLE. */
        void awaitSettled() {
            long last = -1;
            long lastChange = System.nanoTime();
            while (missing() > 0) {
                long now = verifier.tally.delivered();
                if (now != last) {
                    last = now;
                    lastChange = System.nanoTime();
                } else if (System.nanoTime() - lastChange > SETTLE.toNanos()) {
                    return;
                }
                LocalServers.pause(100);
            }
        }

        /**
         * Seconds from {@code sinceNanos} until Kafka holds every message in {@code acknowledgedThen} (those exact
         * sequence numbers, not just as many messages), bounded by {@code bound}.
         */
        double recoverySince(long sinceNanos, Map<String, BitSet> acknowledgedThen, Duration bound) {
            long deadline = System.nanoTime() + bound.toNanos();
            while (missingOf(acknowledgedThen) > 0 && System.nanoTime() < deadline) {
                LocalServers.pause(50);
            }
            return (System.nanoTime() - sinceNanos) / 1e9;
        }

        double recoverySince(long sinceNanos, Map<String, BitSet> acknowledgedThen) {
            return recoverySince(sinceNanos, acknowledgedThen, Duration.ofMinutes(2));
        }

        /** {@link #recoverySince} on its own thread, so the scenario can go on (start a replacement) meanwhile. */
        java.util.concurrent.CompletableFuture<Double> recoveryInBackground(long sinceNanos,
                Map<String, BitSet> acknowledgedThen) {
            java.util.concurrent.CompletableFuture<Double> result = new java.util.concurrent.CompletableFuture<>();
            Thread t = new Thread(() -> result.complete(recoverySince(sinceNanos, acknowledgedThen)), "recovery");
            t.setDaemon(true);
            t.start();
            return result;
        }

        /** After everything settled: the background recovery, or -1 when what was sent then never all arrived. */
        double settledRecovery(java.util.concurrent.CompletableFuture<Double> recovery) {
            awaitSettled();
            return recovery.completeOnTimeout(-1.0, 1, TimeUnit.SECONDS).join();
        }

        long missingOf(Map<String, BitSet> acknowledged) {
            long missing = 0;
            for (Map.Entry<String, BitSet> e : acknowledged.entrySet()) {
                missing += verifier.tally.missing(e.getKey(), e.getValue());
            }
            return missing;
        }

        long missing() {
            long missing = 0;
            for (String d : simulator.deviceIds()) {
                missing += verifier.tally.missing(d, simulator.acknowledged(d));
            }
            return missing;
        }

        Row row(double recovery, String note) {
            awaitSettled();
            return new Row(name, simulator.acknowledged(), verifier.tally.delivered(), missing(),
                    verifier.tally.duplicates(), verifier.tally.outOfOrder(), recovery, brokerDropped(),
                    note + queueNote());
        }

        private String queueNote() {
            if (maxQueued == LONG_OUTAGE_QUEUE) {
                return "; broker max_queued_messages raised to " + LONG_OUTAGE_QUEUE
                        + " (the default 1000 per session would drop most of a long outage's backlog)";
            }
            if (maxQueued > 0) {
                return "; broker max_queued_messages " + maxQueued + " (faults.max-queued)";
            }
            return "";
        }

        /**
         * Messages the broker dropped because a session's queue was full ({@link BrokerStats}; by the time a row is
         * taken at least one 10 s $SYS interval has passed whenever something was missing), -1 when unreadable.
         */
        long brokerDropped() {
            return servers.mosquitto.pid() < 0 ? -1 : BrokerStats.droppedSoFar(servers.mosquitto.port);
        }

        /** Client ids whose session queue overflowed, from mosquitto.log. */
        Set<String> droppingClients() {
            return grepAll(servers.workDir.resolve("mosquitto").resolve("mosquitto.log"),
                    Pattern.compile("Outgoing messages are being dropped for client ([^ .]+)"));
        }

        /** First match of {@code regex}'s group 1 in a gateway's log, or "?" */
        String fromLog(GatewayProcess g, String regex) {
            Set<String> all = grepAll(logs.get(g), Pattern.compile(regex));
            return all.isEmpty() ? "?" : all.iterator().next();
        }

        Set<String> fromLogAll(GatewayProcess g, String regex) {
            return grepAll(logs.get(g), Pattern.compile(regex));
        }

        /** The client id a gateway leased (its latest one). */
        String leasedId(GatewayProcess g) {
            Set<String> ids = fromLogAll(g, "Leased MQTT client id (\\S+) for instance");
            String last = "?";
            for (String id : ids) {
                last = id;
            }
            return last;
        }

        @Override
        public void close() {
            if (simulator != null) {
                simulator.close();
            }
            if (verifier != null) {
                verifier.close();
            }
            gateways.forEach(g -> g.stop(false));
            servers.close();
        }
    }

    static Set<String> grepAll(Path file, Pattern pattern) {
        Set<String> found = new LinkedHashSet<>();
        if (file == null || !Files.exists(file)) {
            return found;
        }
        try {
            for (String line : Files.readAllLines(file, java.nio.charset.StandardCharsets.ISO_8859_1)) {
                Matcher m = pattern.matcher(line);
                if (m.find()) {
                    found.add(m.group(1));
                }
            }
        } catch (IOException e) {
            // best effort: a note, not a result
        }
        return found;
    }

    /** How a scenario's broker is set up: persistence, and max_queued_messages (0 = Mosquitto's default 1000). */
    record Setup(Scenario scenario, boolean persistentBroker, int maxQueued) {
    }

    public static void main(String[] args) throws Exception {
        rate = Integer.getInteger("faults.rate", 2000);
        int maxQueuedOverride = Integer.getInteger("faults.max-queued", 0);
        Set<String> only = new LinkedHashSet<>(List.of(System.getProperty("faults.only", "").split(",")));
        only.remove("");
        Map<String, Setup> scenarios = new LinkedHashMap<>();
        scenarios.put("kafka-restart-graceful", new Setup(s -> kafkaRestart(s, false), false, 0));
        scenarios.put("kafka-kill-9", new Setup(s -> kafkaRestart(s, true), false, 0));
        scenarios.put("gateway-kill-9", new Setup(s -> gatewayKill(s), false, 0));
        scenarios.put("gateway-replaced-new-name", new Setup(s -> gatewayGone(s, true), false, 0));
        scenarios.put("gateway-killed-not-replaced", new Setup(s -> gatewayGone(s, false), false, 0));
        scenarios.put("gateway-sigterm", new Setup(FaultScenarios::gatewaySigterm, false, 0));
        scenarios.put("broker-restart", new Setup(FaultScenarios::brokerRestart, true, 0));
        scenarios.put("redis-down", new Setup(FaultScenarios::redisDown, false, 0));
        // devices that number their messages: duplicate removal must leave 0 duplicates as well as 0 missing
        scenarios.put("dedup-kill-9-restarted", new Setup(numbered(s -> gatewayKill(s, REPLACE_RATE)), false, 0));
        scenarios.put("dedup-kill-9-replaced", new Setup(numbered(s -> gatewayGone(s, true)), false, 0));
        scenarios.put("dedup-kill-9-not-replaced", new Setup(numbered(s -> gatewayGone(s, false)), false, 0));
        scenarios.put("bad-input-flood", new Setup(FaultScenarios::badInputFlood, false, 0));
        scenarios.put("gateway-stalled", new Setup(FaultScenarios::gatewayStalled, false, 0));
        // long outages: the broker's default queue (1000 per session) would drop the backlog, see the class comment
        scenarios.put("kafka-down-long", new Setup(FaultScenarios::kafkaDownLong, false, LONG_OUTAGE_QUEUE));
        scenarios.put("kafka-down-3min", new Setup(FaultScenarios::kafkaDown3min, false, LONG_OUTAGE_QUEUE));
        Set<String> unknown = new TreeSet<>(only);
        unknown.removeAll(scenarios.keySet());
        if (!unknown.isEmpty()) {
            System.err.println("faults: unknown scenario(s) " + unknown + "; known: " + scenarios.keySet());
            System.exit(2);
        }
        List<Row> rows = new ArrayList<>();
        for (Map.Entry<String, Setup> e : scenarios.entrySet()) {
            if (!only.isEmpty() && !only.contains(e.getKey())) {
                continue;
            }
            System.err.printf("faults: %s ...%n", e.getKey());
            Setup setup = e.getValue();
            int maxQueued = maxQueuedOverride > 0 ? maxQueuedOverride : setup.maxQueued();
            try (Stage stage = new Stage(e.getKey(), setup.persistentBroker(), maxQueued)) {
                System.err.println("faults: servers and gateway logs in " + stage.servers.workDir);
                Row row = setup.scenario().run(stage);
                Set<String> dropping = stage.droppingClients();
                if (!dropping.isEmpty()) {
                    row = row.withNote("broker queue overflowed for " + dropping);
                }
                if (row.missing() > 0 && row.brokerDropped() >= row.missing()) {
                    row = row.withNote("the broker dropped at least as many messages as are missing: a full session "
                            + "queue (max_queued_messages), not the gateway; see faults.max-queued");
                }
                rows.add(row);
                System.out.println(row.json());
            }
        }
        System.out.printf("%n%-28s %8s %9s %8s %6s %6s %10s %8s  %s%n", "scenario", "sent", "received", "missing",
                "dups", "ooo", "recovery s", "brk drop", "note");
        for (Row r : rows) {
            System.out.printf(Locale.ROOT, "%-28s %8d %9d %8d %6d %6d %10.2f %8d  %s%n", r.scenario(), r.sent(),
                    r.received(), r.missing(), r.duplicates(), r.outOfOrder(), r.recoverySeconds(), r.brokerDropped(),
                    r.note());
        }
        System.out.println("sent = QoS 1 publishes the broker acknowledged to the devices; missing = of those, not in "
                + "Kafka; ooo = records behind a later one of the same device in Kafka; recovery = from restoring the "
                + "failed part (gateway kills: from the kill) until Kafka holds everything acknowledged until then; "
                + "brk drop = messages Mosquitto itself dropped because a session queue was full ($SYS counter)");
        System.exit(rows.stream().anyMatch(r -> r.missing() > 0
                || (r.scenario().startsWith("dedup-") && r.duplicates() > 0)) ? 1 : 0);
    }

    /** The scenario with numbered devices (MQTT 5 seq/seq-epoch user properties): duplicates must be 0. */
    static Scenario numbered(Scenario scenario) {
        return s -> {
            s.numbered = true;
            Row row = scenario.run(s);
            double dropped = 0;
            double found = 0;
            for (GatewayProcess g : s.gateways) {
                dropped += g.metric("gateway_ingest_duplicates_dropped_total");
                found += g.metric("gateway_dedup_lookups_total{result=\"found\"}")
                        + g.metric("gateway_dedup_lookups_total{result=\"not-found\"}");
            }
            return row.withNote(String.format(Locale.ROOT, "numbered devices: live replicas dropped %.0f duplicates, "
                    + "looked up %.0f claims of the dead one in Kafka", dropped, found));
        };
    }

    interface Scenario {
        Row run(Stage stage) throws Exception;
    }

    /** 1. Kafka stopped (SIGTERM or SIGKILL) mid-stream for 5 s, then restarted. */
    static Row kafkaRestart(Stage s, boolean kill) throws Exception {
        return outage(s, () -> s.servers.kafka.stop(kill), s.servers.kafka::start,
                kill ? "Kafka SIGKILL, down 5 s" : "Kafka SIGTERM, down 5 s");
    }

    /** A server down for 5 s, 3 s into a 12 s stream; recovery counted from its restart. */
    private static Row outage(Stage s, Runnable stop, Runnable start, String note) throws Exception {
        s.startGateways(1);
        s.publish(rate * 12L / DEVICES, 1);
        LocalServers.pause(3_000);
        stop.run();
        LocalServers.pause(5_000);
        start.run();
        long restored = System.nanoTime();
        Map<String, BitSet> sentThen = s.acknowledgedNow();
        double recovery = s.recoverySince(restored, sentThen);
        s.awaitPublished();
        return s.row(recovery, note);
    }

    /**
     * 2. One of two gateways killed with SIGKILL mid-stream and restarted 3 s later in place: same HOSTNAME and
     * port (a container restarted in its pod), so it takes its own lease, client id and session back at once.
     */
    static Row gatewayKill(Stage s) throws Exception {
        return gatewayKill(s, rate);
    }

    static Row gatewayKill(Stage s, int msgPerSecond) throws Exception {
        s.startGateways(2);
        s.publish(msgPerSecond * 12L / DEVICES, 1, msgPerSecond);
        LocalServers.pause(3_000);
        GatewayProcess victim = s.gateways.get(1);
        String before = s.leasedId(victim);
        long killed = System.nanoTime();
        s.killedAtMillis = System.currentTimeMillis();
        victim.stop(true);
        var recovery = s.recoveryInBackground(killed, s.acknowledgedNow());
        LocalServers.pause(3_000);
        long restarting = System.nanoTime();
        GatewayProcess restarted = s.gateway(s.hostnames.get(victim), victim.httpPort);
        double ready = (System.nanoTime() - restarting) / 1e9;
        s.gateways.set(1, restarted);
        s.awaitPublished();
        Row row = s.row(s.settledRecovery(recovery), String.format(Locale.ROOT, "2 gateways (shared group), one "
                + "SIGKILLed and restarted 3 s later with the same HOSTNAME and port, ready in %.1f s", ready));
        return row.withNote(String.format(Locale.ROOT, "leased %s before, %s after the restart (%s); "
                + "sessions adopted by the survivor %.0f%s", before, s.leasedId(restarted),
                s.fromLog(restarted, "MQTT connected to \\S+ as \\S+ \\((session present: \\w+)"),
                s.gateways.get(0).metric("gateway_mqtt_sessions_adopted_total"), adoptionDetail(s, s.gateways.get(0))));
    }

    /**
     * 2b/2c. One of two gateways SIGKILLed after ~5,000 of 20,000 messages (1,000 msg/s QoS 1, 10 devices). With
     * {@code replace}, a replacement pod under a NEW name (new HOSTNAME, so a new instance id) starts 5 s later, as a
     * Deployment does; without, nobody replaces it and the survivor must adopt the orphaned session. Mosquitto
     * keeps routing part of the shared group's messages to the dead member's session until someone takes that
     * client id over (leased by the replacement once the lease expired, or adopted and drained by a replica).
     * Recovery: from the kill until Kafka holds everything the broker acknowledged before the kill.
     */
    static Row gatewayGone(Stage s, boolean replace) throws Exception {
        s.startGateways(2);
        GatewayProcess survivor = s.gateways.get(0);
        GatewayProcess victim = s.gateways.get(1);
        s.publish(REPLACE_TOTAL / DEVICES, 1, REPLACE_RATE);
        s.awaitAcknowledged(5_000, Duration.ofSeconds(60));
        String victimId = s.leasedId(victim);
        String survivorId = s.leasedId(survivor);
        long killed = System.nanoTime();
        s.killedAtMillis = System.currentTimeMillis();
        victim.stop(true);
        long killedAt = s.acknowledged();
        var recovery = s.recoveryInBackground(killed, s.acknowledgedNow());
        GatewayProcess replacement = null;
        double replacementReady = Double.NaN;
        if (replace) {
            LocalServers.pause(5_000);
            long starting = System.nanoTime();
            replacement = s.gateway(s.name + "-new", 0); // a new pod name and port: a new instance id
            replacementReady = (System.nanoTime() - starting) / 1e9;
            s.gateways.set(1, replacement);
        } else {
            s.gateways.remove(1);
        }
        s.awaitPublished();
        Row row = s.row(s.settledRecovery(recovery), String.format(Locale.ROOT,
                "2 gateways (shared group), %s (%s) SIGKILLed after %d msgs; %s", s.hostnames.get(victim), victimId,
                killedAt, replace ? String.format(Locale.ROOT,
                        "replacement with a new HOSTNAME started 5 s later, ready in %.1f s", replacementReady)
                        : "not replaced"));
        // who took the dead member's session over
        List<String> takeover = new ArrayList<>();
        takeover.add(String.format(Locale.ROOT, "survivor %s adopted %.0f session(s)%s", survivorId,
                survivor.metric("gateway_mqtt_sessions_adopted_total"),
                adoptionDetail(s, survivor)));
        if (replacement != null) {
            takeover.add(String.format(Locale.ROOT, "replacement leased %s (%s) and adopted %.0f session(s)%s",
                    s.leasedId(replacement),
                    s.fromLog(replacement, "MQTT connected to \\S+ as \\S+ \\((session present: \\w+)"),
                    replacement.metric("gateway_mqtt_sessions_adopted_total"), adoptionDetail(s, replacement)));
        }
        return row.withNote(String.join("; ", takeover));
    }

    private static String adoptionDetail(Stage s, GatewayProcess g) {
        Set<String> adopted = s.fromLogAll(g, "Adopting the broker session of (\\S+),");
        Set<String> drained = s.fromLogAll(g, "Drained the adopted session of (\\S+ in \\d+ ms)");
        Set<String> ended = s.fromLogAll(g, "Adoption of client id (\\S+ ended: [^\"]*)");
        StringBuilder out = new StringBuilder();
        if (!adopted.isEmpty()) {
            out.append(" ").append(adopted);
        }
        if (!drained.isEmpty()) {
            out.append(", drained ").append(drained);
        }
        if (!ended.isEmpty()) {
            out.append(", ended ").append(ended);
        }
        // where the broker's drop window goes: kill -> will received -> session adopted (connected)
        Set<String> wills = s.fromLogAll(g, "\"timestamp\":\"([^\"]+)\".*connection \\S+ died; adopting");
        Set<String> adoptions = s.fromLogAll(g, "\"timestamp\":\"([^\"]+)\".*Adopting the broker session of");
        if (s.killedAtMillis > 0 && !wills.isEmpty() && !adoptions.isEmpty()) {
            long will = java.time.Instant.parse(wills.iterator().next()).toEpochMilli();
            long adoption = java.time.Instant.parse(adoptions.iterator().next()).toEpochMilli();
            out.append(String.format(Locale.ROOT, ", kill -> will received %d ms -> adopted %d ms",
                    will - s.killedAtMillis, adoption - s.killedAtMillis));
        }
        return out.toString();
    }

    /** 3. One of two gateways sent SIGTERM mid-stream (a scale-down): it drains and exits; the other carries on. */
    static Row gatewaySigterm(Stage s) throws Exception {
        s.startGateways(2);
        s.publish(rate * 10L / DEVICES, 1);
        LocalServers.pause(3_000);
        GatewayProcess leaving = s.gateways.get(1);
        long term = System.nanoTime();
        Map<String, BitSet> sentThen = s.acknowledgedNow();
        leaving.stop(false);
        double exitSeconds = (System.nanoTime() - term) / 1e9;
        double recovery = s.recoverySince(term, sentThen);
        s.awaitPublished();
        return s.row(recovery, String.format(Locale.ROOT, "2 gateways, one SIGTERMed: exited in %.2f s", exitSeconds));
    }

    /**
     * 4. The broker restarted (SIGTERM, persistence on). Messages acknowledged before the restart and queued for
     * the gateway's session must arrive after it; the gateway reconnects and resumes.
     */
    static Row brokerRestart(Stage s) throws Exception {
        s.startGateways(1);
        GatewayProcess gateway = s.gateways.get(0);
        s.publish(rate * 4L / DEVICES, 1);
        s.awaitPublished();
        DeviceSimulator first = s.simulator;
        s.servers.mosquitto.stop();
        long down = System.nanoTime();
        boolean notReady = false;
        while (System.nanoTime() - down < Duration.ofSeconds(10).toNanos() && !notReady) {
            notReady = !gateway.ready();
            LocalServers.pause(50);
        }
        s.servers.mosquitto.start();
        long restored = System.nanoTime();
        while (!gateway.ready() && System.nanoTime() - restored < Duration.ofSeconds(60).toNanos()) {
            LocalServers.pause(50);
        }
        double reconnect = (System.nanoTime() - restored) / 1e9;
        Map<String, BitSet> sentThen = s.acknowledgedNow();
        double recovery = s.recoverySince(restored, sentThen);
        Row before = s.row(recovery, "");
        s.simulator.close();
        // and new traffic after the restart
        s.publish(rate * 4L / DEVICES, 1);
        s.awaitPublished();
        Row after = s.row(recovery, "");
        long sent = before.sent() + after.sent();
        long missing = 0;
        for (String d : first.deviceIds()) {
            missing += s.verifier.tally.missing(d, first.acknowledged(d));
        }
        missing += after.missing();
        return new Row(s.name, sent, s.verifier.tally.delivered(), missing, s.verifier.tally.duplicates(),
                s.verifier.tally.outOfOrder(), recovery, after.brokerDropped(), String.format(Locale.ROOT,
                        "not-ready during outage: %s; ready %.2f s after restart", notReady, reconnect));
    }

    /** 5. Redis down for 5 s: ingest must not notice. */
    static Row redisDown(Stage s) throws Exception {
        return outage(s, s.servers.redis::stop, s.servers.redis::start, "Redis down 5 s; ingest unaffected");
    }

    /**
     * 6. A flood of bad input (oversize, topics outside the grammar, empty payloads, garbage statuses) mixed with
     * good traffic: good traffic all arrives, every bad message is in the dead-letter topic with its reason.
     */
    static Row badInputFlood(Stage s) throws Exception {
        s.startGateways(1);
        s.publish(rate * 10L / DEVICES, 1);
        String tag = "flood" + s.runId;
        Map<String, Integer> sentByReason = new LinkedHashMap<>();
        com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient bad = io.devicegateway.testing.Devices
                .connect(s.servers.mosquitto.port);
        java.util.Random random = new java.util.Random(42);
        for (int i = 0; i < 500; i++) {
            byte[] garbage = new byte[1 + random.nextInt(64)];
            random.nextBytes(garbage);
            switch (i % 4) {
                case 0 -> send(bad, "devices/" + tag + "-" + i + "/telemetry", new byte[300 * 1024], sentByReason,
                        "payload-too-large");
                case 1 -> send(bad, "devices/" + tag + " bad " + i + "/telemetry", garbage, sentByReason,
                        "invalid-device-id");
                case 2 -> send(bad, "devices/" + tag + "-" + i + "/events", new byte[0], sentByReason, "empty-payload");
                default -> send(bad, "devices/" + tag + "-" + i + "/status", garbage, sentByReason, "invalid-status");
            }
        }
        bad.disconnect();
        s.awaitPublished();
        Map<String, Integer> dead = new LinkedHashMap<>();
        try (io.devicegateway.testing.KafkaRecords dlq = new io.devicegateway.testing.KafkaRecords(
                s.servers.kafka.bootstrapServers(), "iot.dlq")) {
            var records = dlq.await(r -> String.valueOf(io.devicegateway.testing.KafkaRecords.header(r, "mqtt-topic"))
                    .contains(tag), 500, Duration.ofSeconds(60));
            records.forEach(r -> dead.merge(io.devicegateway.testing.KafkaRecords.header(r, "reason"), 1, Integer::sum));
        }
        return s.row(0, "bad sent " + sentByReason + ", dead-lettered " + dead);
    }

    /**
     * The gateway process stopped (SIGSTOP) for 4 s ({@code faults.stall-ms}), twice, under full-rate QoS 1 traffic:
     * what a long GC pause, CPU throttling or a frozen node does to a pod. Mosquitto piles up the messages for its socket, frees those beyond
     * max_queued_messages (1000) while keeping them in the session, and the gateway must get every one back.
     */
    static Row gatewayStalled(Stage s) throws Exception {
        s.startGateways(1);
        GatewayProcess g = s.gateways.get(0);
        s.publish(rate * 12L / DEVICES, 1);
        LocalServers.pause(3_000);
        for (int i = 0; i < 2; i++) {
            signal(g, "STOP");
            LocalServers.pause(STALL_MILLIS);
            signal(g, "CONT");
            LocalServers.pause(3_000);
        }
        s.awaitPublished();
        Row row = s.row(0, String.format(Locale.ROOT, "1 gateway stopped (SIGSTOP) for %.1f s twice under load",
                STALL_MILLIS / 1000.0));
        return row.withNote(String.format(Locale.ROOT, "resend reconnects %d",
                grepCount(s.logs.get(g), "so that the broker resends the messages it dropped")));
    }

    private static int grepCount(Path file, String text) {
        try {
            return (int) Files.readAllLines(file, java.nio.charset.StandardCharsets.ISO_8859_1).stream()
                    .filter(l -> l.contains(text)).count();
        } catch (IOException e) {
            return -1;
        }
    }

    private static void signal(GatewayProcess g, String signal) throws Exception {
        new ProcessBuilder("kill", "-" + signal, Long.toString(g.pid())).inheritIO().start().waitFor();
    }

    private static void send(com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient client, String topic, byte[] payload,
            Map<String, Integer> counts, String reason) {
        io.devicegateway.testing.Devices.publish(client, topic, payload, 1);
        counts.merge(reason, 1, Integer::sum);
    }

    /** 7. Kafka down 20 s, longer than the in-flight bound lasts: memory stays bounded, backlog drains after. */
    static Row kafkaDownLong(Stage s) throws Exception {
        s.startGateways(1);
        GatewayProcess gateway = s.gateways.get(0);
        s.publish(rate * 30L / DEVICES, 1);
        LocalServers.pause(3_000);
        Outage o = Outage.sample(s, gateway, Duration.ofSeconds(20));
        s.awaitPublished();
        return s.row(o.recovery, "Kafka down 20 s: " + o.describe(gateway));
    }

    /**
     * 8. Kafka SIGKILLed for 3 minutes under 1,000 msg/s QoS 1 (one gateway), then restarted. The gateway stops
     * acknowledging at its Receive Maximum, the broker queues the rest (180,000 messages: max_queued_messages
     * raised for this), the MQTT connection must stay up throughout (reconnect counter unchanged), memory stays
     * bounded, and the backlog drains after.
     */
    static Row kafkaDown3min(Stage s) throws Exception {
        s.startGateways(1);
        GatewayProcess gateway = s.gateways.get(0);
        int outageSeconds = 180;
        s.publish(1_000L * (3 + outageSeconds + 20) / DEVICES, 1, 1_000);
        LocalServers.pause(3_000);
        Outage o = Outage.sample(s, gateway, Duration.ofSeconds(outageSeconds));
        s.awaitPublished();
        return s.row(o.recovery, "Kafka down 180 s at 1,000 msg/s: " + o.describe(gateway));
    }

    /** Kafka SIGKILLed for a while with the gateway's memory, in-flight work and MQTT connection sampled. */
    static final class Outage {
        long rssBefore;
        long maxRss;
        long brokerRssBefore;
        long maxBrokerRss;
        double maxInFlight;
        double reconnectsBefore;
        double reconnectsAfter;
        double minConnected = Double.NaN;
        double recovery;
        long seconds;

        static Outage sample(Stage s, GatewayProcess gateway, Duration length) {
            Outage o = new Outage();
            o.seconds = length.toSeconds();
            o.rssBefore = LocalServers.rssMiB(gateway.pid());
            o.brokerRssBefore = LocalServers.rssMiB(s.servers.mosquitto.pid());
            o.reconnectsBefore = gateway.metric("gateway_mqtt_reconnects_total");
            s.servers.kafka.stop(true);
            long start = System.nanoTime();
            long end = start + length.toNanos();
            long nextReport = start + Duration.ofSeconds(30).toNanos();
            while (System.nanoTime() < end) {
                o.maxRss = Math.max(o.maxRss, LocalServers.rssMiB(gateway.pid()));
                o.maxBrokerRss = Math.max(o.maxBrokerRss, LocalServers.rssMiB(s.servers.mosquitto.pid()));
                String metrics = gateway.metrics();
                o.maxInFlight = Math.max(o.maxInFlight,
                        io.devicegateway.testing.PrometheusText.sample(metrics, "gateway_ingest_in_flight"));
                double connected = io.devicegateway.testing.PrometheusText.sample(metrics, "gateway_mqtt_connected");
                o.minConnected = Double.isNaN(o.minConnected) ? connected : Math.min(o.minConnected, connected);
                if (System.nanoTime() > nextReport) {
                    nextReport += Duration.ofSeconds(30).toNanos();
                    System.err.printf(Locale.ROOT, "faults: Kafka down %d s: gateway RSS %d MiB, in-flight %.0f, "
                            + "MQTT connected %.0f, reconnects %.0f, acknowledged %d, in Kafka %d%n",
                            (System.nanoTime() - start) / 1_000_000_000L, LocalServers.rssMiB(gateway.pid()),
                            io.devicegateway.testing.PrometheusText.sample(metrics, "gateway_ingest_in_flight"),
                            connected,
                            io.devicegateway.testing.PrometheusText.sample(metrics, "gateway_mqtt_reconnects_total"),
                            s.acknowledged(), s.verifier.tally.delivered());
                }
                LocalServers.pause(1_000);
            }
            o.reconnectsAfter = gateway.metric("gateway_mqtt_reconnects_total");
            s.servers.kafka.start();
            long restored = System.nanoTime();
            Map<String, BitSet> sentThen = s.acknowledgedNow();
            o.recovery = s.recoverySince(restored, sentThen, Duration.ofMinutes(5));
            return o;
        }

        String describe(GatewayProcess gateway) {
            return String.format(Locale.ROOT,
                    "gateway RSS %d -> max %d MiB, max in-flight %.0f, MQTT reconnects %.0f -> %.0f during the "
                            + "outage (%s), MQTT connected throughout: %s, broker RSS %d -> max %d MiB, "
                            + "gateway alive: %s",
                    rssBefore, maxRss, maxInFlight, reconnectsBefore, reconnectsAfter,
                    reconnectsAfter == reconnectsBefore ? "connection stayed up" : "RECONNECTED",
                    minConnected == 1.0, brokerRssBefore, maxBrokerRss, gateway.alive());
        }
    }
}
