package io.devicegateway.bench;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicLong;

import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.LocalServers;

/**
 * The fault scenarios of a Kubernetes day, each against its own real servers and packaged gateway processes,
 * counting every message: the broker-acknowledged QoS 1 publishes of simulated devices must all reach Kafka.
 * Prints one JSON line per scenario and a table (scenario, sent, received, missing, duplicates, recovery).
 * Every wait is bounded; the whole run takes a few minutes and stops by itself. {@code make faults}.
 *
 * <p>Options: {@code faults.only} (comma-separated scenario names), {@code faults.rate} (msg/s, default 2000).
 */
public final class FaultScenarios {

    record Row(String scenario, long sent, long received, long missing, long duplicates, long outOfOrder,
            double recoverySeconds, String note) {

        String json() {
            return String.format(Locale.ROOT,
                    "{\"scenario\":\"%s\",\"sent\":%d,\"received\":%d,\"missing\":%d,\"duplicates\":%d,"
                            + "\"out_of_order\":%d,\"recovery_s\":%.2f,\"note\":\"%s\"}",
                    scenario, sent, received, missing, duplicates, outOfOrder, recoverySeconds, note);
        }
    }

    private static final int DEVICES = 10;
    private static final Duration SETTLE = Duration.ofSeconds(20);
    private static int rate;

    /** Servers, gateways, a publishing simulator and a Kafka verifier for one scenario. */
    static final class Stage implements AutoCloseable {
        final LocalServers servers;
        final List<GatewayProcess> gateways = new ArrayList<>();
        final String runId = UUID.randomUUID().toString().substring(0, 6);
        final Set<String> devices = java.util.concurrent.ConcurrentHashMap.newKeySet();
        private int batch;
        final Map<String, String> config;
        final String name;
        DeviceSimulator simulator;
        KafkaVerifier verifier;
        Thread publisher;

        Stage(String name, boolean persistentBroker) {
            this.name = name;
            servers = LocalServers.startWith(name, 1000, m -> m.persistent = persistentBroker);
            config = new LinkedHashMap<>(servers.gatewayConfig());
            config.put("gateway.mqtt.shared-group", "faults");
            config.put("gateway.grpc.auth.tokens", io.devicegateway.testing.Agents.tokensConfig());
        }

        GatewayProcess gateway(String clientId) {
            Map<String, String> c = new LinkedHashMap<>(config);
            c.put("gateway.mqtt.client-id", clientId);
            Path log = servers.workDir.resolve(clientId + "-" + System.nanoTime() + ".log");
            GatewayProcess g = GatewayProcess.start(c, List.of("-Xmx256m"), log).awaitReady(Duration.ofSeconds(60));
            return g;
        }

        void startGateways(int count) {
            for (int i = 0; i < count; i++) {
                gateways.add(gateway("dgw-" + name + "-" + i));
            }
        }

        /** Publishes perDevice QoS 1 messages from every device at the scenario rate, in the background. */
        void publish(long perDevice, int qos) {
            // every batch has its own device ids, so sequence numbers never repeat
            simulator = new DeviceSimulator("127.0.0.1", servers.mosquitto.port, runId + "b" + batch++, DEVICES,
                    "devices/%s/telemetry");
            devices.addAll(simulator.deviceIds());
            if (verifier == null) {
                verifier = new KafkaVerifier(servers.kafka.bootstrapServers(), "iot.telemetry", devices);
            }
            publisher = new Thread(() -> simulator.run(perDevice, 100, qos, rate), "fault-publisher");
            publisher.start();
        }

        void awaitPublished() throws InterruptedException {
            publisher.join(Duration.ofMinutes(3).toMillis());
        }

        long acknowledged() {
            return simulator.acknowledged();
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

        /** Seconds from {@code since} until Kafka holds everything acknowledged at that moment. */
        double recoverySince(long sinceNanos, long acknowledgedThen) {
            long deadline = System.nanoTime() + Duration.ofMinutes(2).toNanos();
            while (verifier.tally.delivered() < acknowledgedThen && System.nanoTime() < deadline) {
                LocalServers.pause(20);
            }
            return (System.nanoTime() - sinceNanos) / 1e9;
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
                    verifier.tally.duplicates(), verifier.tally.outOfOrder(), recovery, note);
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

    public static void main(String[] args) throws Exception {
        rate = Integer.getInteger("faults.rate", 2000);
        Set<String> only = new HashSet<>(List.of(System.getProperty("faults.only", "").split(",")));
        only.remove("");
        Map<String, Scenario> scenarios = new LinkedHashMap<>();
        scenarios.put("kafka-restart-graceful", s -> kafkaRestart(s, false));
        scenarios.put("kafka-kill-9", s -> kafkaRestart(s, true));
        scenarios.put("gateway-kill-9", FaultScenarios::gatewayKill);
        scenarios.put("gateway-sigterm", FaultScenarios::gatewaySigterm);
        scenarios.put("broker-restart", FaultScenarios::brokerRestart);
        scenarios.put("redis-down", FaultScenarios::redisDown);
        scenarios.put("bad-input-flood", FaultScenarios::badInputFlood);
        scenarios.put("kafka-down-long", FaultScenarios::kafkaDownLong);
        List<Row> rows = new ArrayList<>();
        for (Map.Entry<String, Scenario> e : scenarios.entrySet()) {
            if (!only.isEmpty() && !only.contains(e.getKey())) {
                continue;
            }
            System.err.printf("faults: %s ...%n", e.getKey());
            boolean persistent = e.getKey().equals("broker-restart");
            try (Stage stage = new Stage(e.getKey(), persistent)) {
                Row row = e.getValue().run(stage);
                rows.add(row);
                System.out.println(row.json());
            }
        }
        System.out.printf("%n%-24s %8s %9s %8s %6s %6s %11s  %s%n", "scenario", "sent", "received", "missing",
                "dups", "ooo", "recovery s", "note");
        for (Row r : rows) {
            System.out.printf(Locale.ROOT, "%-24s %8d %9d %8d %6d %6d %11.2f  %s%n", r.scenario(), r.sent(),
                    r.received(), r.missing(), r.duplicates(), r.outOfOrder(), r.recoverySeconds(), r.note());
        }
        System.out.println("sent = QoS 1 publishes the broker acknowledged to the devices; missing = of those, not in "
                + "Kafka; recovery = from restoring the failed part until Kafka holds everything sent until then");
        System.exit(rows.stream().anyMatch(r -> r.missing() > 0) ? 1 : 0);
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
        long sentThen = s.acknowledged();
        double recovery = s.recoverySince(restored, sentThen);
        s.awaitPublished();
        return s.row(recovery, note);
    }

    /** 2. One of two gateways killed with SIGKILL mid-stream, restarted 3 s later with the same client id. */
    static Row gatewayKill(Stage s) throws Exception {
        s.startGateways(2);
        s.publish(rate * 12L / DEVICES, 1);
        LocalServers.pause(3_000);
        GatewayProcess victim = s.gateways.get(1);
        victim.stop(true);
        LocalServers.pause(3_000);
        long restarting = System.nanoTime();
        s.gateways.set(1, s.gateway("dgw-" + s.name + "-1"));
        long sentThen = s.acknowledged();
        double recovery = s.recoverySince(restarting, sentThen);
        s.awaitPublished();
        return s.row(recovery, "2 gateways (shared group), one SIGKILLed and restarted after 3 s");
    }

    /** 3. One of two gateways sent SIGTERM mid-stream (a scale-down): it drains and exits; the other carries on. */
    static Row gatewaySigterm(Stage s) throws Exception {
        s.startGateways(2);
        s.publish(rate * 10L / DEVICES, 1);
        LocalServers.pause(3_000);
        GatewayProcess leaving = s.gateways.get(1);
        long term = System.nanoTime();
        long sentThen = s.acknowledged();
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
        long sentThen = first.acknowledged();
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
                s.verifier.tally.outOfOrder(), recovery, String.format(Locale.ROOT,
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
        long rssBefore = LocalServers.rssMiB(gateway.pid());
        s.servers.kafka.stop(true);
        AtomicLong maxRss = new AtomicLong();
        double maxInFlight = 0;
        long end = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        while (System.nanoTime() < end) {
            maxRss.accumulateAndGet(LocalServers.rssMiB(gateway.pid()), Math::max);
            maxInFlight = Math.max(maxInFlight, gateway.metric("gateway_ingest_in_flight"));
            LocalServers.pause(500);
        }
        s.servers.kafka.start();
        long restored = System.nanoTime();
        long sentThen = s.acknowledged();
        double recovery = s.recoverySince(restored, sentThen);
        s.awaitPublished();
        return s.row(recovery, String.format(Locale.ROOT,
                "Kafka down 20 s: RSS %d -> max %d MiB, max in-flight %.0f, gateway alive: %s", rssBefore,
                maxRss.get(), maxInFlight, gateway.alive()));
    }
}
