package io.devicegateway.command;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.DeviceAgent;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.GatewayProcess;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.v1.CommandOutcome;
import io.devicegateway.v1.CommandResult;
import io.devicegateway.v1.GetSessionRequest;
import io.devicegateway.v1.Outcome;
import io.devicegateway.v1.SendEventRequest;
import io.devicegateway.v1.SendEventResponse;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;

/**
 * Two packaged gateway instances behind one broker, sharing the ingest subscription: a response reaches the
 * instance that waits for it, whichever instance sent the command, and is recorded once; a correlation id waited for
 * on one is refused on the other; a 10 MB response reaches neither; their new consumer group replays no history.
 */
class TwoInstancesIT {

    private static final Duration TIMEOUT = Duration.ofSeconds(60);
    private static LocalServers servers;
    private static GatewayProcess a;
    private static GatewayProcess b;

    /** Online before the gateways start, with a command on iot.commands from before their consumer group existed. */
    private static DeviceAgent historicDevice;
    private static String historicCorrelation;

    @BeforeAll
    static void start() throws Exception {
        servers = LocalServers.start("two-instances");
        historicDevice = new DeviceAgent(Devices.uniqueId("history"), servers.mosquitto.port).connect();
        historicCorrelation = "historic-" + historicDevice.deviceId;
        try (KafkaProducer<String, byte[]> producer = producer()) {
            producer.send(new ProducerRecord<>("iot.commands", historicDevice.deviceId, SendEventRequest.newBuilder()
                    .setDeviceId(historicDevice.deviceId).setName("historic").setCorrelationId(historicCorrelation)
                    .setTtlSeconds(600).build().toByteArray())).get();
        }
        a = instance("dgw-it-a");
        b = instance("dgw-it-b");
        a.awaitReady(TIMEOUT);
        b.awaitReady(TIMEOUT);
    }

    private static GatewayProcess instance(String clientId) {
        Map<String, String> config = new LinkedHashMap<>(servers.gatewayConfig());
        config.put("gateway.mqtt.client-id", clientId);
        config.put("gateway.mqtt.shared-group", "it");
        config.put("gateway.grpc.auth.tokens", Agents.tokensConfig());
        return GatewayProcess.start(config, List.of("-Xmx256m"), servers.workDir.resolve(clientId + ".log"));
    }

    private static KafkaProducer<String, byte[]> producer() {
        return new KafkaProducer<>(Map.of("bootstrap.servers", servers.kafka.bootstrapServers()),
                new StringSerializer(), new ByteArraySerializer());
    }

    @AfterAll
    static void stop() {
        if (historicDevice != null) {
            historicDevice.close();
        }
        if (a != null) {
            a.close();
        }
        if (b != null) {
            b.close();
        }
        servers.close();
    }

    private static SendEventResponse request(GatewayProcess instance, String deviceId) {
        return request(instance, deviceId, "", 10_000);
    }

    private static SendEventResponse request(GatewayProcess instance, String deviceId, String correlationId,
            int timeoutMs) {
        ManagedChannel channel = Agents.channel(instance.httpPort);
        try {
            return Agents.stub(channel, Agents.OPS_TOKEN).sendEvent(SendEventRequest.newBuilder()
                    .setDeviceId(deviceId).setName("status").setPayload(ByteString.copyFromUtf8("?"))
                    .setCorrelationId(correlationId).setAwaitResponse(true).setResponseTimeoutMs(timeoutMs).build());
        } finally {
            channel.shutdownNow();
        }
    }

    private static Status.Code code(GatewayProcess instance, String deviceId, String correlationId, int timeoutMs) {
        return assertThrows(StatusRuntimeException.class, () -> request(instance, deviceId, correlationId, timeoutMs))
                .getStatus().getCode();
    }

    private static boolean online(GatewayProcess instance, String deviceId) {
        ManagedChannel channel = Agents.channel(instance.httpPort);
        try {
            return Agents.stub(channel, Agents.OPS_TOKEN)
                    .getSession(GetSessionRequest.newBuilder().setDeviceId(deviceId).build()).getOnline();
        } catch (RuntimeException notYet) {
            return false;
        } finally {
            channel.shutdownNow();
        }
    }

    @Test
    void theWaitingInstanceGetsTheAnswerAndItIsRecordedOnce() {
        String id = Devices.uniqueId("pump");
        try (DeviceAgent device = new DeviceAgent(id, servers.mosquitto.port).answering(200, "pong").connect();
                KafkaRecords results = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.command-results")) {
            Awaitility.await().atMost(TIMEOUT).until(() -> online(a, id) && online(b, id));
            for (GatewayProcess instance : List.of(a, b, a, b)) {
                SendEventResponse response = request(instance, id);
                assertEquals(Outcome.RESPONDED, response.getOutcome());
                assertEquals("pong", response.getResponsePayload().toStringUtf8());
                String corr = response.getCorrelationId();
                results.await(r -> is(r.value(), corr, CommandOutcome.COMMAND_RESPONDED), 1, TIMEOUT);
                Awaitility.await().during(Duration.ofSeconds(1)).atMost(Duration.ofSeconds(5)).until(() -> results
                        .drain(r -> is(r.value(), corr, CommandOutcome.COMMAND_RESPONDED)).size() == 1);
            }
        }
    }

    @Test
    void bothInstancesShareTheIngestLoadAndNothingIsLost() {
        String id = Devices.uniqueId("shared");
        int count = 400;
        double beforeA = a.metric("gateway_ingest_messages_total{kind=\"telemetry\"}");
        double beforeB = b.metric("gateway_ingest_messages_total{kind=\"telemetry\"}");
        Mqtt3BlockingClient device = Devices.connect(servers.mosquitto.port);
        try (KafkaRecords telemetry = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.telemetry")) {
            for (int i = 0; i < count; i++) {
                Devices.publish(device, "devices/" + id + "/telemetry", Integer.toString(i).getBytes(), 1);
            }
            assertEquals(count, telemetry.await(r -> id.equals(r.key()), count, TIMEOUT).size());
            double byA = a.metric("gateway_ingest_messages_total{kind=\"telemetry\"}") - beforeA;
            double byB = b.metric("gateway_ingest_messages_total{kind=\"telemetry\"}") - beforeB;
            assertTrue(byA > 0 && byB > 0, "split " + byA + " / " + byB);
            assertEquals(count, byA + byB, 0.0);
        } finally {
            device.disconnect();
        }
    }

    /**
     * The gateway's own MQTT 5 CONNECT sets a Maximum Packet Size (1 MiB + 64 KiB by default), so the broker never
     * sends a replica a 10 MB response: Mosquitto drops it for both gateway sessions (the device still got its PUBACK)
     * and the waiting call ends with DEADLINE_EXCEEDED. A response just over max-response-bytes does reach both and is
     * dead-lettered by each (every replica receives every response).
     */
    @Test
    void aTenMegabyteResponseNeverReachesEitherReplicaAndBothStayUp() {
        String id = Devices.uniqueId("huge");
        try (DeviceAgent device = new DeviceAgent(id, servers.mosquitto.port).connect();
                KafkaRecords dlq = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.dlq")) {
            Awaitility.await().atMost(TIMEOUT).until(() -> online(a, id) && online(b, id));
            device.answering(200, "z".repeat(10 * 1024 * 1024));
            assertEquals(Status.Code.DEADLINE_EXCEEDED, code(a, id, "", 3_000));

            device.answering(200, "z".repeat(256 * 1024 + 1));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, code(b, id, "", 10_000));
            // published after the 10 MB one on the same connection: had that reached a replica, it would be here first
            List<ConsumerRecord<String, byte[]>> dead = dlq.await(r -> id.equals(r.key()), 2, TIMEOUT);
            for (ConsumerRecord<String, byte[]> record : dead) {
                assertEquals("response-too-large", KafkaRecords.header(record, "reason"));
                assertEquals(Integer.toString(256 * 1024 + 1), KafkaRecords.header(record, "payload-size"));
            }

            assertTrue(a.alive() && b.alive() && a.ready() && b.ready(), "both replicas up");
            device.answering(200, "pong");
            assertEquals("pong", request(a, id).getResponsePayload().toStringUtf8());
            assertEquals("pong", request(b, id).getResponsePayload().toStringUtf8());
        }
    }

    @Test
    void refusesACorrelationIdStillWaitedForOnTheOtherReplica() throws Exception {
        String id = Devices.uniqueId("dup");
        String corr = "dup-" + id;
        try (DeviceAgent device = new DeviceAgent(id, servers.mosquitto.port).connect()) {
            Awaitility.await().atMost(TIMEOUT).until(() -> online(a, id) && online(b, id));
            CompletableFuture<SendEventResponse> first = CompletableFuture
                    .supplyAsync(() -> request(a, id, corr, 20_000));
            Awaitility.await().atMost(TIMEOUT).until(() -> device.received().size() == 1);
            assertEquals(Status.Code.ALREADY_EXISTS, code(b, id, corr, 5_000));
            device.respond(corr, 200, "one");
            assertEquals("one", first.get(30, TimeUnit.SECONDS).getResponsePayload().toStringUtf8());
            assertEquals(1, device.received().size());
        }
    }

    /**
     * The two replicas' consumer group did not exist when the historic command was written: it starts at the end of
     * iot.commands, so the command is never sent (nor even read). A probe written now, to the same partition, is.
     */
    @Test
    void aNewConsumerGroupDoesNotResendTheTopicsHistory() throws Exception {
        String id = historicDevice.deviceId;
        try (KafkaProducer<String, byte[]> producer = producer();
                KafkaRecords results = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.command-results")) {
            Awaitility.await().atMost(TIMEOUT).until(() -> online(a, id));
            Awaitility.await().atMost(TIMEOUT).pollInterval(Duration.ofMillis(500)).until(() -> {
                producer.send(new ProducerRecord<>("iot.commands", id, SendEventRequest.newBuilder().setDeviceId(id)
                        .setName("probe").setTtlSeconds(600).build().toByteArray())).get();
                return !results.drain(r -> delivered(r.value(), id)).isEmpty();
            });
            Awaitility.await().atMost(TIMEOUT).until(() -> !historicDevice.received().isEmpty());
            assertTrue(historicDevice.received().stream().allMatch(r -> r.name().equals("probe")),
                    historicDevice.received().toString());
            assertTrue(results.drain(r -> is(r.value(), historicCorrelation, CommandOutcome.COMMAND_DELIVERED)
                    || is(r.value(), historicCorrelation, CommandOutcome.COMMAND_FAILED)).isEmpty());
        }
    }

    private static boolean delivered(byte[] value, String deviceId) {
        try {
            CommandResult result = CommandResult.parseFrom(value);
            return result.getDeviceId().equals(deviceId) && result.getOutcome() == CommandOutcome.COMMAND_DELIVERED;
        } catch (InvalidProtocolBufferException e) {
            return false;
        }
    }

    private static boolean is(byte[] value, String correlationId, CommandOutcome outcome) {
        try {
            CommandResult result = CommandResult.parseFrom(value);
            return result.getCorrelationId().equals(correlationId) && result.getOutcome() == outcome;
        } catch (InvalidProtocolBufferException e) {
            return false;
        }
    }
}
