package io.devicegateway.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

/**
 * Mosquitto with the dynamic-security plugin, set up the way README describes for a real broker:
 * {@code mosquitto_ctrl dynsec init FILE <gateway user> <password>} makes the gateway's broker user the dynsec
 * admin, and a role {@code device-gateway} lets it publish commands and its own will ({@code devices/+/commands/#},
 * {@code dgw/#}); the admin role already lets it subscribe to everything. Anonymous clients are refused.
 */
public final class MosquittoDynsec {

    public static final String PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
    public static final String GATEWAY_USER = "device-gateway";
    public static final String GATEWAY_PASSWORD = "gateway-broker-secret";

    private MosquittoDynsec() {
    }

    /** Writes the dynsec file into a fresh directory (writable by the broker, which saves every change there). */
    public static Path configure(LocalServers.Mosquitto mosquitto, String name) {
        try {
            Path dir = Files.createDirectories(Paths.get("target", "servers").toAbsolutePath()
                    .resolve(name + "-dynsec-" + UUID.randomUUID().toString().substring(0, 8)));
            Path file = dir.resolve("dynamic-security.json");
            Process init = new ProcessBuilder(LocalServers.binary("mosquitto_ctrl"), "dynsec", "init",
                    file.toString(), GATEWAY_USER, GATEWAY_PASSWORD).redirectErrorStream(true)
                    .redirectOutput(dir.resolve("init.log").toFile()).start();
            if (!init.waitFor(30, TimeUnit.SECONDS) || init.exitValue() != 0) {
                throw new IllegalStateException("mosquitto_ctrl dynsec init failed (apt-get install -y "
                        + "mosquitto-clients); see " + dir.resolve("init.log"));
            }
            JsonObject config = new JsonObject(Files.readString(file));
            config.getJsonArray("roles").add(new JsonObject().put("rolename", "device-gateway").put("acls",
                    new JsonArray().add(acl("publishClientSend", "devices/+/commands/#")).add(acl("publishClientSend", "dgw/#"))));
            config.getJsonArray("clients").getJsonObject(0).getJsonArray("roles")
                    .add(new JsonObject().put("rolename", "device-gateway"));
            Files.writeString(file, config.encodePrettily());
            // the broker drops root privileges and rewrites the file (via a temporary one) on every change
            Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxrwxrwx"));
            Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-rw-rw-"));
            mosquitto.extraConfig.addAll(List.of("allow_anonymous false", "plugin " + PLUGIN,
                    "plugin_opt_config_file " + file));
            return file;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    private static JsonObject acl(String type, String topic) {
        return new JsonObject().put("acltype", type).put("topic", topic).put("allow", true);
    }
}
