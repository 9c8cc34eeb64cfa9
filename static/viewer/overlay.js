// The text in a viewport's corners: patient, study and series, the frame's place in the series, the window. It
// only writes text into the elements it is given, each time the viewport says something changed.

/**
 * @param {import("./viewport.js").Viewport} viewport
 * @param {{patient: HTMLElement, study: HTMLElement, slice: HTMLElement, window: HTMLElement}} elements
 */
export function attachOverlay(viewport, elements) {
  const update = () => {
    const series = viewport.series || { patient: {}, study: {}, attributes: {}, frames: [] };
    const frame = series.frames[viewport.frame] || {};
    const shownWindow = viewport.window || (viewport.imageHeader && viewport.imageHeader.window)
      || series.defaultWindow;
    const { patient, study, attributes } = series;
    elements.patient.textContent = `${patient.PatientName || ""}  ${patient.PatientID || ""}`;
    elements.study.textContent = `${study.StudyDescription || ""} ${study.StudyDate || ""} · `
      + `${attributes.Modality || ""} ${attributes.SeriesDescription || ""}`;
    elements.slice.textContent = `Image ${viewport.frame + 1} / ${viewport.count}`
      + (frame.position != null ? ` · ${Number(frame.position).toFixed(1)} mm` : "");
    elements.window.textContent = shownWindow
      ? `W ${Math.round(shownWindow[1])} L ${Math.round(shownWindow[0])}${viewport.invert ? " · inverted" : ""}`
      : "";
  };
  viewport.on("change", update);
  update();
}
