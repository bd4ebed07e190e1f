// HTTP image download: rtr7's recovery HTTP server against nginx serving the
// same file, fetched by curl over loopback in the same run. Ratio >= 0.9 is
// the target (issue 2).
import { mkdtemp, rm, writeFile, chmod } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { buildRecoveryHttp } from "../../server/http/recovery-http.js";
import { FileMap, fileFromDisk } from "../../lib/served-files.js";
import { silentLogger } from "../../lib/log.js";
import { start } from "../../lab/processes.js";
import { compare, printComparisons, timeCommand } from "./harness.js";

const sizeMiB = 256;
const ourPort = 18_773;
const nginxPort = 18_774;

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(tmpdir(), "rtr7-bench-http-"));
  await chmod(work, 0o755);
  const www = path.join(work, "www");
  await (await import("node:fs/promises")).mkdir(www, { mode: 0o755 });
  const image = path.join(www, "root.img");
  const chunk = randomBytes(1024 * 1024);
  await writeFile(image, Buffer.concat(Array.from({ length: sizeMiB }, () => chunk)), { mode: 0o644 });

  const config = path.join(work, "nginx.conf");
  await writeFile(
    config,
    `daemon off;
worker_processes 1;
pid ${work}/nginx.pid;
error_log ${work}/error.log;
events {}
http {
  access_log off;
  sendfile on;
  client_body_temp_path ${work}/body;
  proxy_temp_path ${work}/proxy;
  fastcgi_temp_path ${work}/fastcgi;
  uwsgi_temp_path ${work}/uwsgi;
  scgi_temp_path ${work}/scgi;
  server { listen 127.0.0.1:${nginxPort}; root ${www}; }
}
`,
  );
  const nginx = start("nginx", ["-c", config, "-e", `${work}/error.log`]);
  const http = buildRecoveryHttp({
    files: new FileMap([await fileFromDisk("root.img", image)]),
    manifest: { images: [] },
    token: "bench",
    log: silentLogger(),
  });
  await http.app.listen({ host: "127.0.0.1", port: ourPort });
  await new Promise((resolve) => setTimeout(resolve, 500));
  try {
    const curl = (port: number) => () =>
      timeCommand("curl", ["-sS", "--fail", "-o", "/dev/null", `http://127.0.0.1:${port}/root.img`]);
    const result = await compare(
      `GET ${sizeMiB} MiB image`,
      { name: "rtr7", run: curl(ourPort) },
      { name: "nginx", run: curl(nginxPort) },
      9,
    );
    printComparisons("HTTP image download over loopback (curl)", "nginx", [result], sizeMiB * 1024 * 1024);
  } finally {
    await http.app.close();
    await nginx.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
