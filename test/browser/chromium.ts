import { chromium, type Browser } from 'playwright-core'

/** The flags DEVELOPERS.md gives for Debian's chromium on these machines. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']

/** Debian's chromium (`apt-get install chromium`); a browser is never downloaded. */
export async function launchChromium (): Promise<Browser> {
  return await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS })
}
