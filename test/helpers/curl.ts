// curl's arguments for pushing an image to a unit's update API as gokrazy's
// tools would: `curl -sS --fail -o /dev/null -u gokrazy:PASSWORD -T IMAGE`,
// then any extra flags, then the URL.

export function curlPushArgs(password: string, image: string, url: string, extra: string[] = []): string[] {
  return ["-sS", "--fail", "-o", "/dev/null", "-u", `gokrazy:${password}`, "-T", image, ...extra, url];
}
