package io.devicegateway.registry;

import java.util.List;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

/**
 * What a registered device may do on the broker, in one place for both enforcement paths: the Mosquitto dynsec role
 * ({@link #dynsecAcls}) and the HTTP auth hook ({@link #mayPublish}, {@link #maySubscribe}). A device publishes only
 * to {@code devices/{id}/telemetry/#}, {@code devices/{id}/events/#}, {@code devices/{id}/status},
 * {@code devices/{id}/responses/#} and subscribes only within {@code devices/{id}/commands/#}.
 */
public final class DeviceRights {

    /** Levels under {@code devices/{id}/} a device may publish to, with anything below them. */
    private static final List<String> PUBLISH_TREES = List.of("telemetry", "events", "responses");
    private static final String STATUS = "status";
    private static final String COMMANDS = "commands";

    private DeviceRights() {
    }

    /** Whether device {@code id} may publish to {@code topic} (a topic name: wildcards are never allowed). */
    public static boolean mayPublish(String id, String topic) {
        if (topic == null || topic.indexOf('+') >= 0 || topic.indexOf('#') >= 0) {
            return false;
        }
        String own = "devices/" + id + "/";
        if (!topic.startsWith(own)) {
            return false;
        }
        String rest = topic.substring(own.length());
        if (rest.equals(STATUS)) {
            return true;
        }
        for (String tree : PUBLISH_TREES) {
            if (rest.equals(tree) || rest.startsWith(tree + "/")) {
                return true;
            }
        }
        return false;
    }

    /**
     * Whether device {@code id} may subscribe to {@code filter}: the filter must lie within
     * {@code devices/{id}/commands/#} (wildcards only below {@code commands}; shared subscriptions are refused).
     */
    public static boolean maySubscribe(String id, String filter) {
        if (filter == null) {
            return false;
        }
        String commands = "devices/" + id + "/" + COMMANDS;
        return filter.equals(commands) || filter.startsWith(commands + "/");
    }

    /** Whether device {@code id} may receive a message published on {@code topic} (its own commands). */
    public static boolean mayReceive(String id, String topic) {
        return topic != null && topic.indexOf('+') < 0 && topic.indexOf('#') < 0 && maySubscribe(id, topic);
    }

    /** The same rights as Mosquitto dynamic-security ACLs (defaults deny publish and subscribe). */
    static JsonArray dynsecAcls(String id) {
        String base = "devices/" + id + "/";
        JsonArray acls = new JsonArray();
        for (String tree : PUBLISH_TREES) {
            acls.add(acl("publishClientSend", base + tree + "/#"));
        }
        acls.add(acl("publishClientSend", base + STATUS));
        acls.add(acl("subscribePattern", base + COMMANDS + "/#"));
        acls.add(acl("publishClientReceive", base + COMMANDS + "/#"));
        return acls;
    }

    private static JsonObject acl(String type, String topic) {
        return new JsonObject().put("acltype", type).put("topic", topic).put("allow", true);
    }
}
