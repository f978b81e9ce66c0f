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
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
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
import io.devicegateway.testing.RedisCommands;
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
    private static KafkaRecords dlq;
    private static boolean kafkaIntakeLive;

    @TestHTTPResource
    URL url;

    @BeforeAll
    static void start() {
        servers = SharedServers.get();
        results = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.command-results");
        dlq = new KafkaRecords(servers.kafka.bootstrapServers(), "iot.dlq");
    }

    @AfterAll
    static void stop() {
        results.close();
        dlq.close();
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

    /** A SendEvent running in the background (e.g. one waiting for a response while the test acts). */
    private CompletableFuture<SendEventResponse> sendAsync(SendEventRequest request) {
        return CompletableFuture.supplyAsync(() -> send(request));
    }

    private static String deadLetterReason(String key) {
        return KafkaRecords.header(dlq.await(r -> key.equals(r.key()), 1, TIMEOUT).get(0), "reason");
    }

    private static KafkaProducer<String, byte[]> producer() {
        return new KafkaProducer<>(Map.of("bootstrap.servers", servers.kafka.bootstrapServers()),
                new StringSerializer(), new ByteArraySerializer());
    }

    /**
     * The gateway's consumer group starts at the end of iot.commands: until it has its partitions, a record produced
     * now would be history to it. Probes (for a device never seen) until one of them gets a result.
     */
    private static void awaitKafkaIntake(KafkaProducer<String, byte[]> producer) {
        if (kafkaIntakeLive) {
            return;
        }
        String ghost = Devices.uniqueId("probe");
        Awaitility.await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(200)).until(() -> {
            producer.send(new ProducerRecord<>("iot.commands", ghost,
                    command(ghost, "probe").setCorrelationId("probe-" + UUID.randomUUID()).build().toByteArray()))
                    .get();
            return !results.drain(r -> parse(r).getDeviceId().equals(ghost)).isEmpty();
        });
        kafkaIntakeLive = true;
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
            awaitKafkaIntake(producer);
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

    // ---- issue 9, items 5-9 ----

    @Test
    void refusesAResponseFromAnotherDeviceAndKeepsWaitingForTheAskedOne() throws Exception {
        String asked = Devices.uniqueId("asked");
        String other = Devices.uniqueId("other");
        try (DeviceAgent device = online(asked); DeviceAgent intruder = online(other)) {
            String corr = "ask-" + asked;
            CompletableFuture<SendEventResponse> call = sendAsync(command(asked, "read").setCorrelationId(corr)
                    .setAwaitResponse(true).setResponseTimeoutMs(20_000).build());
            Awaitility.await().atMost(TIMEOUT).until(() -> device.received().size() == 1);

            intruder.respond(corr, 200, "forged");
            assertEquals("response-device-mismatch", deadLetterReason(other));
            assertTrue(!call.isDone(), "a response from another device must not complete the call");

            device.respond(corr, 200, "genuine");
            SendEventResponse response = call.get(30, TimeUnit.SECONDS);
            assertEquals(Outcome.RESPONDED, response.getOutcome());
            assertEquals("genuine", response.getResponsePayload().toStringUtf8());
            CommandResult recorded = result(corr, CommandOutcome.COMMAND_RESPONDED);
            assertEquals(asked, recorded.getDeviceId());
            assertEquals("genuine", recorded.getResponsePayload().toStringUtf8());
        }
    }

    @Test
    void deadLettersAResponseToACorrelationIdNeverSentToThatDevice() {
        String id = Devices.uniqueId("liar");
        try (DeviceAgent device = online(id)) {
            device.respond("never-sent-" + id, null, "made up");
            assertEquals("response-device-mismatch", deadLetterReason(id));
            Awaitility.await().during(Duration.ofMillis(500)).atMost(Duration.ofSeconds(3)).until(() -> results
                    .drain(r -> matches(r, "never-sent-" + id, CommandOutcome.COMMAND_RESPONDED)).isEmpty());
        }
    }

    @Test
    void refusesASecondSendEventForACorrelationIdStillWaitedFor() throws Exception {
        String id = Devices.uniqueId("twice");
        String neighbour = Devices.uniqueId("neighbour");
        try (DeviceAgent device = online(id); DeviceAgent other = online(neighbour)) {
            String corr = "same-" + id;
            CompletableFuture<SendEventResponse> first = sendAsync(command(id, "read").setCorrelationId(corr)
                    .setAwaitResponse(true).setResponseTimeoutMs(20_000).build());
            Awaitility.await().atMost(TIMEOUT).until(() -> device.received().size() == 1);

            StatusRuntimeException refused = assertThrows(StatusRuntimeException.class, () -> send(command(id, "read")
                    .setCorrelationId(corr).setAwaitResponse(true).setResponseTimeoutMs(5_000).build()));
            assertEquals(Status.Code.ALREADY_EXISTS, refused.getStatus().getCode());
            assertEquals(Status.Code.ALREADY_EXISTS, code(() -> send(command(id, "other").setCorrelationId(corr)
                    .build())));
            assertEquals(1, device.received().size(), "the refused commands were not sent");
            // correlation ids are per device: another device may use the same one meanwhile
            assertEquals(Outcome.DELIVERED, send(command(neighbour, "read").setCorrelationId(corr).build())
                    .getOutcome());

            device.respond(corr, 200, "first");
            SendEventResponse answered = first.get(30, TimeUnit.SECONDS);
            assertEquals(Outcome.RESPONDED, answered.getOutcome(), "the first caller was not overwritten");
            assertEquals("first", answered.getResponsePayload().toStringUtf8());
            // answered: the correlation id is free again
            assertEquals(Outcome.DELIVERED, send(command(id, "again").setCorrelationId(corr).build()).getOutcome());
        }
    }

    @Test
    void deadLettersAResponseOverTheLimitAndFailsTheWaitingCall() {
        String id = Devices.uniqueId("chatty");
        try (DeviceAgent device = online(id).answering(200, "x".repeat(256 * 1024 + 1))) {
            StatusRuntimeException error = assertThrows(StatusRuntimeException.class, () -> send(command(id, "dump")
                    .setAwaitResponse(true).setResponseTimeoutMs(20_000).build()));
            assertEquals(Status.Code.RESOURCE_EXHAUSTED, error.getStatus().getCode());
            assertTrue(error.getStatus().getDescription().contains("max-response-bytes"),
                    error.getStatus().getDescription());
            ConsumerRecord<String, byte[]> dead = dlq.await(r -> id.equals(r.key()), 1, TIMEOUT).get(0);
            assertEquals("response-too-large", KafkaRecords.header(dead, "reason"));
            assertEquals(Integer.toString(256 * 1024 + 1), KafkaRecords.header(dead, "payload-size"));
            assertTrue(dead.value().length < 4096, "the oversize payload is not copied to the dead letter");

            device.answering(200, "y".repeat(256 * 1024)); // exactly at the limit
            SendEventResponse atLimit = send(command(id, "dump").setAwaitResponse(true).build());
            assertEquals(Outcome.RESPONDED, atLimit.getOutcome());
            assertEquals(256 * 1024, atLimit.getResponsePayload().size());
        }
    }

    @Test
    void refusesCommandsBeyondTheQueueCapAndDeliversTheQueuedOnesInOrder() {
        String id = Devices.uniqueId("full");
        online(id).goOffline();
        awaitOnline(id, false);
        withStub(OPS_TOKEN, stub -> {
            for (int i = 0; i < 100; i++) {
                assertEquals(Outcome.QUEUED, stub.sendEvent(command(id, "c" + i).setTtlSeconds(120).build())
                        .getOutcome());
            }
            return null;
        });
        StatusRuntimeException full = assertThrows(StatusRuntimeException.class,
                () -> send(command(id, "c100").setCorrelationId("over-" + id).setTtlSeconds(120).build()));
        assertEquals(Status.Code.RESOURCE_EXHAUSTED, full.getStatus().getCode());
        assertTrue(full.getStatus().getDescription().contains("max-queued-per-device"),
                full.getStatus().getDescription());
        assertTrue(result("over-" + id, CommandOutcome.COMMAND_FAILED).getDetail().startsWith("RESOURCE_EXHAUSTED"));
        assertEquals(100, session(id).getQueuedCommands());
        try (DeviceAgent back = new DeviceAgent(id, servers.mosquitto.port).connect()) {
            Awaitility.await().atMost(TIMEOUT).until(() -> back.received().size() >= 100);
            List<String> expected = java.util.stream.IntStream.range(0, 100).mapToObj(i -> "c" + i).toList();
            assertEquals(expected, back.received().stream().map(DeviceAgent.Received::name).toList());
            assertEquals(0, session(id).getQueuedCommands());
        }
    }

    @Test
    void expiresOnlyTheStaleCommandsOfAQueueAndKeepsTheRestInOrder() {
        String id = Devices.uniqueId("mixed");
        online(id).goOffline();
        awaitOnline(id, false);
        for (int i = 0; i < 6; i++) {
            boolean stale = i % 2 == 0;
            send(command(id, (stale ? "short" : "long") + i).setCorrelationId("mixed-" + i + "-" + id)
                    .setTtlSeconds(stale ? 1 : 120).build());
        }
        for (int i = 0; i < 6; i += 2) {
            result("mixed-" + i + "-" + id, CommandOutcome.COMMAND_EXPIRED);
        }
        Awaitility.await().atMost(TIMEOUT).until(() -> session(id).getQueuedCommands() == 3);
        try (DeviceAgent back = new DeviceAgent(id, servers.mosquitto.port).connect()) {
            Awaitility.await().atMost(TIMEOUT).until(() -> back.received().size() >= 3);
            assertEquals(List.of("long1", "long3", "long5"),
                    back.received().stream().map(DeviceAgent.Received::name).toList());
        }
    }

    /**
     * Redis refusing the gateway's scripts (an ACL change on the real server) stands in for Redis failing: unlike a
     * restart it keeps the shared server's data. It starts when the device receives its first queued command, so it
     * lands in the middle of the drain (commands taken from Redis, not yet published or not yet put back).
     */
    @Test
    void deliversEveryQueuedCommandWhenRedisFailsDuringTheDrain() {
        String id = Devices.uniqueId("flaky");
        online(id).goOffline();
        awaitOnline(id, false);
        int count = 100;
        withStub(OPS_TOKEN, stub -> {
            for (int i = 0; i < count; i++) {
                assertEquals(Outcome.QUEUED, stub.sendEvent(command(id, "q" + i).setTtlSeconds(120).build())
                        .getOutcome());
            }
            return null;
        });
        // -1 until the first command arrives, then what the device had when Redis came back
        java.util.concurrent.atomic.AtomicInteger receivedAtFailure = new java.util.concurrent.atomic.AtomicInteger(-1);
        try (RedisCommands redis = new RedisCommands(servers.redis.port);
                DeviceAgent back = new DeviceAgent(id, servers.mosquitto.port)) {
            redis.call("ACL", "LOG", "RESET");
            back.onCommand(r -> {
                if (receivedAtFailure.compareAndSet(-1, 0)) {
                    redis.call("ACL", "SETUSER", "default", "-eval", "-evalsha");
                }
            });
            try {
                back.connect();
                // the gateway ran into it: Redis logged a refused script
                Awaitility.await().atMost(TIMEOUT).until(() -> receivedAtFailure.get() == 0
                        && !((List<?>) redis.call("ACL", "LOG")).isEmpty());
                receivedAtFailure.set(back.received().size());
            } finally {
                redis.call("ACL", "SETUSER", "default", "+@all");
            }
            assertTrue(receivedAtFailure.get() < count, "Redis failed in the middle of the drain, after "
                    + receivedAtFailure.get() + " commands");
            Awaitility.await().atMost(TIMEOUT).until(() -> back.received().size() >= count);
            List<String> expected = java.util.stream.IntStream.range(0, count).mapToObj(i -> "q" + i).toList();
            assertEquals(expected, back.received().stream().map(DeviceAgent.Received::name).toList(),
                    "every queued command, once, in order");
            List<ConsumerRecord<String, byte[]>> delivered = results.await(r -> id.equals(parse(r).getDeviceId())
                    && parse(r).getOutcome() == CommandOutcome.COMMAND_DELIVERED, count, TIMEOUT);
            assertEquals(count, delivered.stream().map(r -> parse(r).getCorrelationId()).distinct().count(),
                    "a delivered result for each");
            Awaitility.await().atMost(TIMEOUT).until(() -> session(id).getQueuedCommands() == 0);
        }
    }

    @Test
    void neverSendsAKafkaCommandThatWentStaleBeforeTheGatewayReadIt() throws Exception {
        String id = Devices.uniqueId("stale");
        try (DeviceAgent device = online(id); KafkaProducer<String, byte[]> producer = producer()) {
            awaitKafkaIntake(producer);
            long twoMinutesAgo = System.currentTimeMillis() - 120_000;
            producer.send(new ProducerRecord<>("iot.commands", null, twoMinutesAgo, id, command(id, "old-ttl")
                    .setCorrelationId("old-ttl-" + id).setTtlSeconds(60).build().toByteArray())).get();
            producer.send(new ProducerRecord<>("iot.commands", null, twoMinutesAgo, id, command(id, "old-no-ttl")
                    .setCorrelationId("old-no-ttl-" + id).build().toByteArray())).get();
            producer.send(new ProducerRecord<>("iot.commands", id, command(id, "fresh")
                    .setCorrelationId("fresh-" + id).build().toByteArray())).get();

            CommandResult expired = result("old-ttl-" + id, CommandOutcome.COMMAND_EXPIRED);
            assertTrue(expired.getDetail().contains("stale"), expired.getDetail());
            result("old-no-ttl-" + id, CommandOutcome.COMMAND_EXPIRED);
            result("fresh-" + id, CommandOutcome.COMMAND_DELIVERED);
            // same key, same partition: the stale ones were handled first, so they would have arrived first
            Awaitility.await().atMost(TIMEOUT).until(() -> !device.received().isEmpty());
            assertEquals(List.of("fresh"), device.received().stream().map(DeviceAgent.Received::name).toList());
        }
    }

    @Test
    void countsAKafkaCommandsTtlFromItsRecordTimestamp() throws Exception {
        String id = Devices.uniqueId("late");
        online(id).goOffline();
        awaitOnline(id, false);
        try (KafkaProducer<String, byte[]> producer = producer()) {
            awaitKafkaIntake(producer);
            // requested 55 s ago with a 60 s TTL: queued, and gone about 5 s later (not 60 s after it was read)
            producer.send(new ProducerRecord<>("iot.commands", null, System.currentTimeMillis() - 55_000, id,
                    command(id, "soon-stale").setCorrelationId("late-" + id).setTtlSeconds(60).build().toByteArray()))
                    .get();
            result("late-" + id, CommandOutcome.COMMAND_QUEUED);
            long queuedAt = System.currentTimeMillis();
            result("late-" + id, CommandOutcome.COMMAND_EXPIRED);
            assertTrue(System.currentTimeMillis() - queuedAt < 20_000, "expired by the TTL counted from the record");
        }
        try (DeviceAgent back = new DeviceAgent(id, servers.mosquitto.port).connect()) {
            awaitOnline(id, true);
            Awaitility.await().during(Duration.ofSeconds(1)).atMost(Duration.ofSeconds(3))
                    .until(() -> back.received().isEmpty());
        }
    }
}
