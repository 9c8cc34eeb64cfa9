// Share links in the admin: each read-only link field shows the absolute URL, and its Copy button copies it.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input.share-link").forEach((input) => {
    input.value = new URL(input.value, location.href).href;  // display fields render the path only
  });
  document.querySelectorAll("button[data-copy-link]").forEach((button) => {
    button.addEventListener("click", async () => {
      const input = button.previousElementSibling;
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (error) {
        document.execCommand("copy");  // http:// pages other than localhost have no clipboard API
      }
      button.textContent = "Copied";
    });
  });
});
