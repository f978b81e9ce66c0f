package io.devicegateway.testing;

import java.io.IOException;
import java.io.Reader;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.yaml.snakeyaml.Yaml;

/**
 * The JVM the way the Kubernetes manifests run it, for the benchmarks: the options and environment of the ConfigMap
 * ({@code JDK_JAVA_OPTIONS}, {@code MALLOC_ARENA_MAX} in {@code kubernetes/base/configmap.yaml}) and the pod's
 * memory limit ({@code kubernetes/overlays/plain/deployment.yaml}), which a container makes the JVM's physical memory:
 * here {@code -XX:MaxRAM=<limit>} stands in for the cgroup, so {@code MaxRAMPercentage} sizes the heap as in the pod.
 * One source: what is measured is what is deployed.
 */
public final class PodJvm {

    /** The JDK of the images (Temurin 25, also the one that builds the AOT cache), when installed here. */
    public static final String JDK25_JAVA = "/usr/lib/jvm/temurin-25-jdk-amd64/bin/java";

    private static final Path CONFIGMAP = Paths.get("kubernetes", "base", "configmap.yaml");
    private static final Path DEPLOYMENT = Paths.get("kubernetes", "overlays", "plain", "deployment.yaml");

    private PodJvm() {
    }

    /** {@code JDK_JAVA_OPTIONS} of the ConfigMap, one option per element. */
    public static List<String> options() {
        String options = configMap().get("JDK_JAVA_OPTIONS");
        if (options == null || options.isBlank()) {
            throw new IllegalStateException(CONFIGMAP + " sets no JDK_JAVA_OPTIONS");
        }
        return Arrays.asList(options.trim().split("\\s+"));
    }

    /** The options plus {@code -XX:MaxRAM} = the pod's memory limit: the heap is sized as in the container. */
    public static List<String> emulatedOptions() {
        List<String> options = new ArrayList<>(options());
        options.add("-XX:MaxRAM=" + memoryLimitBytes());
        return options;
    }

    /** Environment variables of the ConfigMap that the JVM itself reads (glibc malloc arenas). */
    public static Map<String, String> environment() {
        Map<String, String> env = new LinkedHashMap<>();
        String arenas = configMap().get("MALLOC_ARENA_MAX");
        if (arenas != null) {
            env.put("MALLOC_ARENA_MAX", arenas);
        }
        return env;
    }

    /** The container's memory limit in bytes (resources.limits.memory of the plain Deployment). */
    public static long memoryLimitBytes() {
        Map<String, Object> deployment = load(DEPLOYMENT);
        Object limit = dig(deployment, "spec", "template", "spec", "containers", 0, "resources", "limits", "memory");
        if (limit == null) {
            throw new IllegalStateException(DEPLOYMENT + " sets no memory limit");
        }
        return quantity(limit.toString());
    }

    /** Kubernetes quantity (Mi, Gi, M, G or bytes) in bytes. */
    static long quantity(String q) {
        String[][] units = { { "Ki", "1024" }, { "Mi", "1048576" }, { "Gi", "1073741824" }, { "k", "1000" },
                { "M", "1000000" }, { "G", "1000000000" } };
        for (String[] u : units) {
            if (q.endsWith(u[0])) {
                return Long.parseLong(q.substring(0, q.length() - u[0].length())) * Long.parseLong(u[1]);
            }
        }
        return Long.parseLong(q);
    }

    /** The java binary for the gateway: {@code property} if set, else JDK 25 if installed, else this JVM's. */
    public static String java(String property) {
        String configured = System.getProperty(property, "").trim();
        if (!configured.isEmpty()) {
            return configured;
        }
        return Files.isExecutable(Paths.get(JDK25_JAVA)) ? JDK25_JAVA : LocalServers.java();
    }

    /** One line for a report: the options, the emulated limit and the environment. */
    public static String describe() {
        return String.join(" ", options()) + " -XX:MaxRAM=" + memoryLimitBytes() / (1024 * 1024) + "m (pod limit)"
                + (environment().isEmpty() ? "" : " " + environment());
    }

    @SuppressWarnings("unchecked")
    private static Map<String, String> configMap() {
        Object data = load(CONFIGMAP).get("data");
        Map<String, String> values = new LinkedHashMap<>();
        if (data instanceof Map<?, ?> m) {
            m.forEach((k, v) -> values.put(String.valueOf(k), String.valueOf(v)));
        }
        return values;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> load(Path file) {
        Path resolved = findUp(file);
        try (Reader r = Files.newBufferedReader(resolved)) {
            return (Map<String, Object>) new Yaml().load(r);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static Object dig(Object node, Object... path) {
        for (Object step : path) {
            if (step instanceof Integer i && node instanceof List<?> list) {
                node = list.size() > i ? list.get(i) : null;
            } else if (node instanceof Map<?, ?> map) {
                node = map.get(step);
            } else {
                return null;
            }
        }
        return node;
    }

    private static Path findUp(Path relative) {
        Path dir = Paths.get("").toAbsolutePath();
        while (dir != null) {
            if (Files.exists(dir.resolve(relative))) {
                return dir.resolve(relative);
            }
            dir = dir.getParent();
        }
        throw new IllegalStateException("no " + relative + " above " + Paths.get("").toAbsolutePath());
    }
}
