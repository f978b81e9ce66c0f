package io.devicegateway.testing;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CopyOnWriteArrayList;

import com.hivemq.client.mqtt.MqttClient;
import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.mqtt3.Mqtt3AsyncClient;
import com.hivemq.client.mqtt.mqtt3.message.publish.Mqtt3Publish;

/**
 * A simulated device the way the contract describes one: subscribes to its commands, publishes {@code online}
 * (retained) with {@code offline} as its last will, and optionally answers each command.
 */
public final class DeviceAgent implements AutoCloseable {

    /** A command as the device received it. */
    public record Received(String topic, String name, String correlationId, String payload) {
    }

    public final String deviceId;
    private final int port;
    private final List<Received> received = new CopyOnWriteArrayList<>();
    private volatile Integer answerStatus;
    private volatile String answerBody;
    private volatile java.util.function.Consumer<Received> hook = r -> {
    };
    private Mqtt3AsyncClient client;
    private volatile String username;
    private volatile String password;

    public DeviceAgent(String deviceId, int port) {
        this.deviceId = deviceId;
        this.port = port;
    }

    /** Answer every command on devices/{id}/responses/{correlationId}[/{status}] (status null: the short form). */
    public DeviceAgent answering(Integer status, String body) {
        this.answerStatus = status;
        this.answerBody = body;
        return this;
    }

    /** Runs {@code hook} on the client's thread for every command received, before any answer. */
    public DeviceAgent onCommand(java.util.function.Consumer<Received> hook) {
        this.hook = hook;
        return this;
    }

    /** Publishes a response to {@code correlationId} on this device's response topic (status null: the short form). */
    public void respond(String correlationId, Integer status, String body) {
        client.publishWith().topic("devices/" + deviceId + "/responses/" + correlationId
                + (status == null ? "" : "/" + status)).payload(body.getBytes(StandardCharsets.UTF_8))
                .qos(MqttQos.AT_LEAST_ONCE).send().join();
    }

    /** Connect with these broker credentials (a registered device: user name = device id). */
    public DeviceAgent withCredentials(String username, String password) {
        this.username = username;
        this.password = password;
        return this;
    }

    /** Publishes on the device's own connection (the only one a broker with per-device rights accepts). */
    public void publish(String topic, byte[] payload) {
        client.publishWith().topic(topic).payload(payload).qos(MqttQos.AT_LEAST_ONCE).send().join();
    }

    /** Connects, subscribes to commands, then publishes the retained birth message. */
    public DeviceAgent connect() {
        var builder = MqttClient.builder().useMqttVersion3().identifier("dev-" + deviceId + "-" + UUID.randomUUID())
                .serverHost("127.0.0.1").serverPort(port);
        if (username != null) {
            builder = builder.simpleAuth().username(username)
                    .password(password.getBytes(StandardCharsets.UTF_8)).applySimpleAuth();
        }
        client = builder.willPublish().topic(status()).payload("offline".getBytes()).qos(MqttQos.AT_LEAST_ONCE).retain(true)
                .applyWillPublish().buildAsync();
        client.connect().join();
        client.subscribeWith().topicFilter("devices/" + deviceId + "/commands/#").qos(MqttQos.AT_LEAST_ONCE)
                .callback(this::onCommand).send().join();
        client.publishWith().topic(status()).payload("online".getBytes()).qos(MqttQos.AT_LEAST_ONCE).retain(true)
                .send().join();
        return this;
    }

    /** Clean goodbye: publishes the retained {@code offline} itself, then disconnects. */
    public void goOffline() {
        client.publishWith().topic(status()).payload("offline".getBytes()).qos(MqttQos.AT_LEAST_ONCE).retain(true)
                .send().join();
        client.disconnect().join();
    }

    public List<Received> received() {
        return List.copyOf(received);
    }

    private void onCommand(Mqtt3Publish publish) {
        String[] levels = publish.getTopic().toString().split("/");
        Received r = new Received(publish.getTopic().toString(), levels[3], levels[4],
                new String(publish.getPayloadAsBytes(), StandardCharsets.UTF_8));
        received.add(r);
        hook.accept(r);
        String body = answerBody;
        if (body != null) {
            String topic = "devices/" + deviceId + "/responses/" + r.correlationId()
                    + (answerStatus == null ? "" : "/" + answerStatus);
            client.publishWith().topic(topic).payload(body.getBytes(StandardCharsets.UTF_8))
                    .qos(MqttQos.AT_LEAST_ONCE).send();
        }
    }

    private String status() {
        return "devices/" + deviceId + "/status";
    }

    @Override
    public void close() {
        if (client != null && client.getState().isConnected()) {
            client.disconnect().join();
        }
    }
}
