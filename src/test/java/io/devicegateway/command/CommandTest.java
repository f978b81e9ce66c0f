package io.devicegateway.command;

import static io.devicegateway.testing.Agents.FLEET_TOKEN;
import static io.devicegateway.testing.Agents.OPS_TOKEN;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

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

import io.devicegateway.testing.Agents;
import io.devicegateway.testing.DeviceAgent;
import io.devicegateway.testing.Devices;
import io.devicegateway.testing.KafkaRecords;
import io.devicegateway.testing.LocalServers;
import io.devicegateway.testing.SharedServers;
import io.devicegateway.v1.CommandOutcome;
import io.devicegateway.v1.CommandResult;
import io.devicegateway.v1.DeviceGatewayGrpc.DeviceGatewayBlockingStub;
import io.devicegateway.v1.DeviceSession;
import io.devicegateway.v1.GetSessionRequest;
import io.devicegateway.v1.Outcome;
import io.devicegateway.v1.SendEventRequest;
import io.devicegateway.v1.SendEventResponse;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.common.http.TestHTTPResource;
import io.quarkus.test.junit.QuarkusTest;

/** Black-box commands: a real MQTT device, the gRPC API on the HTTP port, results read from Kafka. */
@QuarkusTest
@QuarkusTestResource(value = SharedServers.class, restrictToAnnotatedClass = false)
class CommandTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(30);
    private static LocalServers servers;
    private static KafkaRecords results;

    @TestHTTPResource
    URL url;

    @BeforeAll
    static void start() {
        servers = SharedServers.get();
        results = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.command-results");
    }

    @AfterAll
    static void stop() {
        results.close();
    }

    private <T> T withStub(String token, java.util.function.Function<DeviceGatewayBlockingStub, T> call) {
        ManagedChannel channel = Agents.channel(url);
        try {
            return call.apply(Agents.stub(channel, token));
        } finally {
            channel.shutdownNow();
        }
    }

    private SendEventResponse send(SendEventRequest request) {
        return withStub(OPS_TOKEN, stub -> stub.sendEvent(request));
    }

    private DeviceSession session(String deviceId) {
        return withStub(OPS_TOKEN, stub -> stub.getSession(GetSessionRequest.newBuilder().setDeviceId(deviceId).build()));
    }

    private DeviceAgent online(String deviceId) {
        DeviceAgent device = new DeviceAgent(deviceId, servers.mosquitto.port).connect();
        awaitOnline(deviceId, true);
        return device;
    }

    private void awaitOnline(String deviceId, boolean online) {
        Awaitility.await().atMost(TIMEOUT).ignoreExceptionsInstanceOf(StatusRuntimeException.class)
                .until(() -> session(deviceId).getOnline() == online);
    }

    private static SendEventRequest.Builder command(String deviceId, String name) {
        return SendEventRequest.newBuilder().setDeviceId(deviceId).setName(name)
                .setPayload(ByteString.copyFromUtf8("{\"do\":\"" + name + "\"}"));
    }

    private static CommandResult result(String correlationId, CommandOutcome outcome) {
        ConsumerRecord<String, byte[]> record = results.await(r -> matches(r, correlationId, outcome), 1, TIMEOUT)
                .get(0);
        return parse(record);
    }

    private static boolean matches(ConsumerRecord<String, byte[]> record, String correlationId, CommandOutcome outcome) {
        CommandResult result = parse(record);
        return result.getCorrelationId().equals(correlationId) && result.getOutcome() == outcome;
    }

    private static CommandResult parse(ConsumerRecord<String, byte[]> record) {
        try {
            return CommandResult.parseFrom(record.value());
        } catch (InvalidProtocolBufferException e) {
            throw new AssertionError(e);
        }
    }

    private static Status.Code code(Supplier<?> call) {
        return assertThrows(StatusRuntimeException.class, call::get).getStatus().getCode();
    }

    @Test
    void deliversToAnOnlineDeviceOnItsCommandTopic() {
        String id = Devices.uniqueId("lamp");
        try (DeviceAgent device = online(id)) {
            SendEventResponse response = send(command(id, "reboot").setCorrelationId("corr-1-" + id).build());
            assertEquals(Outcome.DELIVERED, response.getOutcome());
            assertEquals("corr-1-" + id, response.getCorrelationId());
            Awaitility.await().atMost(TIMEOUT).until(() -> device.received().size() == 1);
            DeviceAgent.Received received = device.received().get(0);
            assertEquals("devices/" + id + "/commands/reboot/corr-1-" + id, received.topic());
            assertEquals("{\"do\":\"reboot\"}", received.payload());
            CommandResult result = result("corr-1-" + id, CommandOutcome.COMMAND_DELIVERED);
            assertEquals(id, result.getDeviceId());
            assertEquals("grpc", result.getSource());
        }
    }

    @Test
    void generatesACorrelationIdWhenEmpty() {
        String id = Devices.uniqueId("gen");
        try (DeviceAgent device = online(id)) {
            SendEventResponse response = send(command(id, "ping").build());
            assertTrue(response.getCorrelationId().matches("[0-9a-f-]{36}"), response.getCorrelationId());
            Awaitility.await().atMost(TIMEOUT).until(() -> device.received().size() == 1);
            assertEquals(response.getCorrelationId(), device.received().get(0).correlationId());
        }
    }

    @Test
    void queuesForAnOfflineDeviceAndDeliversInOrderWhenItReturns() {
        String id = Devices.uniqueId("truck");
        DeviceAgent first = online(id);
        first.goOffline();
        awaitOnline(id, false);
        for (int i = 0; i < 5; i++) {
            SendEventResponse response = send(command(id, "step" + i).setTtlSeconds(60).build());
            assertEquals(Outcome.QUEUED, response.getOutcome());
            result(response.getCorrelationId(), CommandOutcome.COMMAND_QUEUED);
        }
        assertEquals(5, session(id).getQueuedCommands());
        try (DeviceAgent back = new DeviceAgent(id, servers.mosquitto.port).connect()) {
            Awaitility.await().atMost(TIMEOUT).until(() -> back.received().size() == 5);
            assertEquals(List.of("step0", "step1", "step2", "step3", "step4"),
                    back.received().stream().map(DeviceAgent.Received::name).toList());
            assertEquals(0, session(id).getQueuedCommands());
        }
    }

    @Test
    void expiresAQueuedCommandWhenItsTtlPasses() {
        String id = Devices.uniqueId("buoy");
        online(id).goOffline();
        awaitOnline(id, false);
        SendEventResponse response = send(command(id, "calibrate").setTtlSeconds(1).build());
        assertEquals(Outcome.QUEUED, response.getOutcome());
        CommandResult expired = result(response.getCorrelationId(), CommandOutcome.COMMAND_EXPIRED);
        assertEquals("calibrate", expired.getName());
        assertEquals(0, session(id).getQueuedCommands());
        try (DeviceAgent back = new DeviceAgent(id, servers.mosquitto.port).connect()) {
            awaitOnline(id, true);
            Awaitility.await().during(Duration.ofSeconds(1)).atMost(Duration.ofSeconds(3))
                    .until(() -> back.received().isEmpty());
        }
    }

    @Test
    void returnsTheDevicesResponseWithItsStatus() {
        String id = Devices.uniqueId("meter");
        try (DeviceAgent device = online(id).answering(201, "{\"reading\":42}")) {
            SendEventResponse response = send(command(id, "read").setAwaitResponse(true).setResponseTimeoutMs(10_000)
                    .build());
            assertEquals(Outcome.RESPONDED, response.getOutcome());
            assertEquals(201, response.getResponseStatus());
            assertEquals("{\"reading\":42}", response.getResponsePayload().toStringUtf8());
            CommandResult recorded = result(response.getCorrelationId(), CommandOutcome.COMMAND_RESPONDED);
            assertEquals(201, recorded.getResponseStatus());
        }
    }

    @Test
    void aResponseWithoutStatusMeans200() {
        String id = Devices.uniqueId("meter");
        try (DeviceAgent device = online(id).answering(null, "ok")) {
            SendEventResponse response = send(command(id, "read").setAwaitResponse(true).build());
            assertEquals(Outcome.RESPONDED, response.getOutcome());
            assertEquals(200, response.getResponseStatus());
        }
    }

    @Test
    void answersDeadlineExceededWhenTheDeviceDoesNotRespond() {
        String id = Devices.uniqueId("mute");
        try (DeviceAgent device = online(id)) {
            assertEquals(Status.Code.DEADLINE_EXCEEDED,
                    code(() -> send(command(id, "read").setAwaitResponse(true).setResponseTimeoutMs(300).build())));
            assertEquals(1, device.received().size(), "it was delivered, just not answered");
        }
    }

    @Test
    void rejectsInvalidRequestsWithInvalidArgument() {
        String id = Devices.uniqueId("v");
        try (DeviceAgent device = online(id)) {
            assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> send(command("bad id", "x").build())));
            assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> send(command("a/b", "x").build())));
            for (String name : new String[] { "", "a/b", "a+", "#", "a b" }) {
                assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> send(command(id, name).build())), name);
            }
            assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> send(command(id, "x")
                    .setPayload(ByteString.copyFrom(new byte[256 * 1024 + 1])).build())));
            assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> send(command(id, "x").setQos(3).build())));
            assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> send(command(id, "x").setQos(-1).build())));
            assertEquals(Status.Code.INVALID_ARGUMENT, code(() -> send(command(id, "x").setTtlSeconds(-5).build())));
            StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
                    () -> send(command(id, "x/y").setCorrelationId("bad-name-" + id).build()));
            assertTrue(e.getStatus().getDescription().contains("name"), e.getStatus().getDescription());
            CommandResult failed = result("bad-name-" + id, CommandOutcome.COMMAND_FAILED);
            assertTrue(failed.getDetail().startsWith("INVALID_ARGUMENT"), failed.getDetail());
            assertTrue(device.received().isEmpty());
        }
    }

    @Test
    void answersNotFoundForADeviceNeverSeen() {
        assertEquals(Status.Code.NOT_FOUND, code(() -> send(command(Devices.uniqueId("ghost"), "x").build())));
        assertEquals(Status.Code.NOT_FOUND, code(() -> session(Devices.uniqueId("ghost"))));
    }

    @Test
    void answersFailedPreconditionForAnOfflineDeviceWithoutTtl() {
        String id = Devices.uniqueId("off");
        online(id).goOffline();
        awaitOnline(id, false);
        assertEquals(Status.Code.FAILED_PRECONDITION, code(() -> send(command(id, "x").build())));
    }

    @Test
    void refusesMissingOrUnknownTokens() {
        String id = Devices.uniqueId("auth");
        assertEquals(Status.Code.UNAUTHENTICATED,
                code(() -> withStub(null, stub -> stub.sendEvent(command(id, "x").build()))));
        assertEquals(Status.Code.UNAUTHENTICATED,
                code(() -> withStub("not-a-token", stub -> stub.sendEvent(command(id, "x").build()))));
        assertEquals(Status.Code.UNAUTHENTICATED, code(() -> withStub(null,
                stub -> stub.getSession(GetSessionRequest.newBuilder().setDeviceId(id).build()))));
    }

    @Test
    void limitsAPrefixTokenToItsDevices() {
        String truck = Devices.uniqueId("truck");
        String sign = Devices.uniqueId("sign");
        try (DeviceAgent t = online(truck); DeviceAgent s = online(sign)) {
            assertEquals(Outcome.DELIVERED,
                    withStub(FLEET_TOKEN, stub -> stub.sendEvent(command(truck, "x").build())).getOutcome());
            assertEquals(Status.Code.PERMISSION_DENIED,
                    code(() -> withStub(FLEET_TOKEN, stub -> stub.sendEvent(command(sign, "x").build()))));
            assertEquals(Status.Code.PERMISSION_DENIED, code(() -> withStub(FLEET_TOKEN,
                    stub -> stub.getSession(GetSessionRequest.newBuilder().setDeviceId(sign).build()))));
        }
    }

    @Test
    void tracksPresenceAndLastSeen() {
        String id = Devices.uniqueId("car");
        long before = System.currentTimeMillis();
        try (DeviceAgent device = online(id)) {
            DeviceSession s = session(id);
            assertTrue(s.getOnline());
            assertTrue(s.getConnectedAtMs() >= before, "connected at " + s.getConnectedAtMs());
            long connected = s.getLastSeenMs();
            var mqtt = Devices.connect(servers.mosquitto.port);
            Awaitility.await().atMost(TIMEOUT).pollInterval(Duration.ofMillis(200)).until(() -> {
                Devices.publish(mqtt, "devices/" + id + "/telemetry", "x".getBytes(), 1);
                return session(id).getLastSeenMs() > connected;
            });
            mqtt.disconnect();
            device.goOffline();
            awaitOnline(id, false);
            assertTrue(session(id).getDisconnectedAtMs() >= s.getConnectedAtMs());
        }
    }

    @Test
    void takesCommandsFromKafkaAndRecordsTheirResults() throws Exception {
        String id = Devices.uniqueId("kafka");
        try (DeviceAgent device = online(id);
                KafkaProducer<String, byte[]> producer = new KafkaProducer<>(
                        Map.of("bootstrap.servers", servers.kafka.bootstrapServers()), new StringSerializer(),
                        new ByteArraySerializer())) {
            producer.send(new ProducerRecord<>("iot.commands", id,
                    command(id, "open").setCorrelationId("k1-" + id).build().toByteArray())).get();
            producer.send(new ProducerRecord<>("iot.commands", id,
                    command(id, "bad/name").setCorrelationId("k2-" + id).build().toByteArray())).get();
            producer.send(new ProducerRecord<>("iot.commands", id, "garbage".getBytes(StandardCharsets.UTF_8))).get();
            Awaitility.await().atMost(TIMEOUT).until(() -> device.received().size() == 1);
            assertEquals("open", device.received().get(0).name());
            CommandResult delivered = result("k1-" + id, CommandOutcome.COMMAND_DELIVERED);
            assertEquals("kafka", delivered.getSource());
            CommandResult failed = result("k2-" + id, CommandOutcome.COMMAND_FAILED);
            assertTrue(failed.getDetail().startsWith("INVALID_ARGUMENT"), failed.getDetail());
        }
    }
}
