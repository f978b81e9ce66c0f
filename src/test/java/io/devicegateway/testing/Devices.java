package io.devicegateway.testing;

import java.util.UUID;

import com.hivemq.client.mqtt.MqttClient;
import com.hivemq.client.mqtt.datatypes.MqttQos;
import com.hivemq.client.mqtt.mqtt3.Mqtt3BlockingClient;

/** A real MQTT 3.1.1 device client (HiveMQ) for tests. */
public final class Devices {

    private Devices() {
    }

    public static Mqtt3BlockingClient connect(int port) {
        Mqtt3BlockingClient client = MqttClient.builder().useMqttVersion3()
                .identifier("device-" + UUID.randomUUID()).serverHost("127.0.0.1").serverPort(port)
                .buildBlocking();
        client.connect();
        return client;
    }

    public static void publish(Mqtt3BlockingClient client, String topic, byte[] payload, int qos) {
        client.publishWith().topic(topic).qos(MqttQos.fromCode(qos)).payload(payload).send();
    }

    /** A device id unique to one test, so tests sharing a topic never read each other's records. */
    public static String uniqueId(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }
}
