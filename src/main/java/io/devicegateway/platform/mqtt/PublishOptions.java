package io.devicegateway.platform.mqtt;

import java.nio.charset.StandardCharsets;

import io.netty.handler.codec.mqtt.MqttProperties;

/**
 * MQTT 5 properties of an outbound publish (a command). A 3.1.1 connection, and a 3.1.1 device behind an MQTT 5
 * broker, simply do not see them.
 *
 * @param messageExpirySeconds Message Expiry Interval: the broker drops the message once it waited this long; 0 = none
 * @param responseTopic        where the device should answer, or null
 * @param correlationData      echoed by the device in its answer, or null
 * @param contentType          Content Type, or null/empty
 */
public record PublishOptions(long messageExpirySeconds, String responseTopic, String correlationData,
        String contentType) {

    public static final PublishOptions NONE = new PublishOptions(0, null, null, null);

    MqttProperties toProperties() {
        MqttProperties properties = new MqttProperties();
        if (messageExpirySeconds > 0) {
            properties.add(new MqttProperties.IntegerProperty(
                    MqttProperties.MqttPropertyType.PUBLICATION_EXPIRY_INTERVAL.value(),
                    (int) Math.min(messageExpirySeconds, Integer.MAX_VALUE)));
        }
        if (responseTopic != null) {
            properties.add(new MqttProperties.StringProperty(MqttProperties.MqttPropertyType.RESPONSE_TOPIC.value(),
                    responseTopic));
        }
        if (correlationData != null) {
            properties.add(new MqttProperties.BinaryProperty(MqttProperties.MqttPropertyType.CORRELATION_DATA.value(),
                    correlationData.getBytes(StandardCharsets.UTF_8)));
        }
        if (contentType != null && !contentType.isEmpty()) {
            properties.add(new MqttProperties.StringProperty(MqttProperties.MqttPropertyType.CONTENT_TYPE.value(),
                    contentType));
        }
        return properties;
    }
}
